#pragma once
#include <atomic>
#include <mutex>
#include <pthread.h>

#include "common.h"

struct kvm_run;
struct kvm_dirty_gfn;

namespace granule {

struct VcpuInit {
  FdRef sys, vm, vcpu;
  size_t mmapSize;
  uint32_t ringBytes;
  uint32_t id;
};

class RunWorker;

class KvmVcpu : public Napi::ObjectWrap<KvmVcpu> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit KvmVcpu(const Napi::CallbackInfo& info);
  ~KvmVcpu() override;

 private:
  friend class RunWorker;
  int Fd(Napi::Env env) const;
  void Idle(Napi::Env env, const char* what) const;
  Napi::Value GetRegs(const Napi::CallbackInfo& info);
  Napi::Value SetRegs(const Napi::CallbackInfo& info);
  Napi::Value SetSregs(const Napi::CallbackInfo& info);
  Napi::Value SetCpuid(const Napi::CallbackInfo& info);
  Napi::Value Run(const Napi::CallbackInfo& info);
  Napi::Value Kick(const Napi::CallbackInfo& info);
  Napi::Value HarvestDirtyRing(const Napi::CallbackInfo& info);
  Napi::Value Running(const Napi::CallbackInfo& info);
  Napi::Value Id(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void Release();
  // Asks a running KVM_RUN to return: sets the reason, then signals the thread running it.
  void Interrupt(int why);

  FdRef sys_, vm_, fd_;
  uint32_t id_ = 0;
  kvm_run* run_ = nullptr;
  size_t mmapSize_ = 0;
  kvm_dirty_gfn* ring_ = nullptr;
  uint32_t ringEntries_ = 0;
  uint32_t ringFetch_ = 0;  // next ring index to harvest; free-running like KVM's indices

  std::atomic<bool> running_{false};
  std::atomic<int> stopReason_{0};  // 0 none, 1 kick, 2 close
  std::mutex threadMu_;             // guards thread_/inRun_ against a run ending mid-signal
  pthread_t thread_{};
  bool inRun_ = false;
  bool closePending_ = false;
};

}  // namespace granule
