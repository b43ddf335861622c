#pragma once
#include <atomic>
#include <mutex>
#include <pthread.h>
#include <string>
#include <vector>

#include "common.h"

namespace granule {

// Write protection of single pages of one host mapping (a frame pool view, i.e. one alias plane)
// with userfaultfd in write-protect mode. A handler thread logs each write fault's page and lifts
// the protection, which wakes the writer: a JS store, or KVM's get_user_pages(FOLL_WRITE) for a
// guest write through a memslot over the view. Other views of the same frames are not affected.
class WriteWatch : public Napi::ObjectWrap<WriteWatch> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit WriteWatch(const Napi::CallbackInfo& info);
  ~WriteWatch() override;

 private:
  Napi::Value Protect(const Napi::CallbackInfo& info);
  Napi::Value Drain(const Napi::CallbackInfo& info);
  Napi::Value Faults(const Napi::CallbackInfo& info);
  Napi::Value Lost(const Napi::CallbackInfo& info);
  Napi::Value How(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void Open(Napi::Env env) const;  // throws if closed or if the handler thread gave up
  void Stop();
  static void* ThreadMain(void* self);
  void Loop();
  // Fatal handler-thread error: stop tracking the whole view and wake every blocked writer.
  void Abandon(const char* call, int err);

  MappingRef map_;
  int uffd_ = -1, stopFd_ = -1;
  pthread_t thread_{};
  bool started_ = false;
  std::string how_;

  // Guards the log and every change of protection, so that a page handed out by drain() is
  // already writable again when protect() re-arms it (the handler logs and unprotects in one step).
  std::mutex mu_;
  std::vector<double> log_;  // byte offsets of faulting pages since the last drain, in fault order
  size_t cap_ = 0;
  uint64_t lostSinceDrain_ = 0;
  std::atomic<uint64_t> faults_{0}, lost_{0};
  std::atomic<int> threadErr_{0};
  const char* threadCall_ = nullptr;  // written before threadErr_ (release), read after it (acquire)
};

}  // namespace granule
