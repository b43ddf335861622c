#include "vcpu.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <vector>
#include "kvm_abi.h"
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "regs.h"
#include "vm.h"

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

namespace granule {

// A signal kicks a vCPU out of KVM_RUN. The handler also sets immediate_exit, so a signal that
// lands between our last check and the ioctl still makes KVM_RUN return at once (the race the KVM
// API documents for immediate_exit).
static int g_kickSignal = 0;
static thread_local kvm_run* t_run = nullptr;

static void OnKick(int) {
  kvm_run* r = t_run;
  if (r) r->immediate_exit = 1;
}

static uint64_t NowNs() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<uint64_t>(t.tv_sec) * 1000000000ull + t.tv_nsec;
}

static const char* ExitName(uint32_t r) {
  switch (r) {
    case KVM_EXIT_UNKNOWN: return "unknown";
    case KVM_EXIT_EXCEPTION: return "exception";
    case KVM_EXIT_IO: return "io";
    case KVM_EXIT_HYPERCALL: return "hypercall";
    case KVM_EXIT_DEBUG: return "debug";
    case KVM_EXIT_HLT: return "hlt";
    case KVM_EXIT_MMIO: return "mmio";
    case KVM_EXIT_IRQ_WINDOW_OPEN: return "irq_window_open";
    case KVM_EXIT_SHUTDOWN: return "shutdown";
    case KVM_EXIT_FAIL_ENTRY: return "fail_entry";
    case KVM_EXIT_INTR: return "intr";
    case KVM_EXIT_SET_TPR: return "set_tpr";
    case KVM_EXIT_TPR_ACCESS: return "tpr_access";
    case KVM_EXIT_NMI: return "nmi";
    case KVM_EXIT_INTERNAL_ERROR: return "internal_error";
    case KVM_EXIT_SYSTEM_EVENT: return "system_event";
    case KVM_EXIT_IOAPIC_EOI: return "ioapic_eoi";
    case KVM_EXIT_HYPERV: return "hyperv";
    case KVM_EXIT_DIRTY_RING_FULL: return "dirty_ring_full";
    case KVM_EXIT_X86_RDMSR: return "x86_rdmsr";
    case KVM_EXIT_X86_WRMSR: return "x86_wrmsr";
    case KVM_EXIT_X86_BUS_LOCK: return "x86_bus_lock";
    case KVM_EXIT_NOTIFY: return "notify";
#ifdef KVM_EXIT_MEMORY_FAULT
    case KVM_EXIT_MEMORY_FAULT: return "memory_fault";
#endif
    default: return "other";
  }
}

enum Outcome { kExit, kTimeout, kKicked, kClosed, kError };

class RunWorker : public Napi::AsyncWorker {
 public:
  RunWorker(Napi::Env env, KvmVcpu* v, Napi::Object self, uint64_t timeoutMs)
      : Napi::AsyncWorker(env, "granule:KVM_RUN"),
        deferred_(Napi::Promise::Deferred::New(env)),
        vcpu_(v),
        self_(Napi::Persistent(self)),
        timeoutMs_(timeoutMs),
        fd_(v->fd_->fd),
        run_(v->run_) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override {
    {
      std::lock_guard<std::mutex> g(vcpu_->threadMu_);
      vcpu_->thread_ = pthread_self();
      vcpu_->inRun_ = true;
    }
    // libuv does not promise which signals its pool threads block.
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, g_kickSignal);
    pthread_sigmask(SIG_UNBLOCK, &s, nullptr);
    t_run = run_;

    timer_t timer{};
    bool haveTimer = false;
    uint64_t start = NowNs();
    uint64_t deadline = timeoutMs_ ? start + timeoutMs_ * 1000000ull : UINT64_MAX;
    if (timeoutMs_) {
      sigevent sev{};
      sev.sigev_notify = SIGEV_THREAD_ID;
      sev.sigev_signo = g_kickSignal;
      sev.sigev_notify_thread_id = static_cast<pid_t>(syscall(SYS_gettid));
      if (timer_create(CLOCK_MONOTONIC, &sev, &timer) == 0) {
        itimerspec its{};
        its.it_value.tv_sec = static_cast<time_t>(timeoutMs_ / 1000);
        its.it_value.tv_nsec = static_cast<long>((timeoutMs_ % 1000) * 1000000);
        haveTimer = timer_settime(timer, 0, &its, nullptr) == 0;
        if (!haveTimer) timer_delete(timer);
      }
      if (!haveTimer) {
        outcome_ = kError;
        err_ = errno;
        call_ = "timer_create";
      }
    }

    while (outcome_ != kError) {
      // Clear before checking the stop reasons: a kick after this store sets it again.
      run_->immediate_exit = 0;
      int why = vcpu_->stopReason_.load();
      if (why) {
        outcome_ = why == 2 ? kClosed : kKicked;
        break;
      }
      if (NowNs() >= deadline) {
        outcome_ = kTimeout;
        break;
      }
      int r = ioctl(fd_, KVM_RUN, 0);
      if (r == 0) {
        outcome_ = kExit;
        break;
      }
      if (errno == EINTR || errno == EAGAIN) continue;  // ours or a stray signal; re-check why
      outcome_ = kError;
      err_ = errno;
      call_ = "KVM_RUN";
    }
    ns_ = NowNs() - start;
    if (haveTimer) timer_delete(timer);
    t_run = nullptr;
    run_->immediate_exit = 0;
    std::lock_guard<std::mutex> g(vcpu_->threadMu_);
    vcpu_->inRun_ = false;
  }

  void OnOK() override { Finish(); }
  void OnError(const Napi::Error&) override { Finish(); }

 private:
  void Finish() {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    vcpu_->running_ = false;
    if (outcome_ == kError) {
      deferred_.Reject(KvmError(env, call_, err_, "vCPU " + std::to_string(vcpu_->id_)).Value());
    } else {
      deferred_.Resolve(ExitInfo(env));
    }
    if (vcpu_->closePending_) vcpu_->Release();
    self_.Reset();
  }

  Napi::Object ExitInfo(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("ns", static_cast<double>(ns_));
    if (outcome_ != kExit) {
      o.Set("reason", outcome_ == kTimeout ? "timeout" : outcome_ == kClosed ? "closed" : "intr");
      o.Set("code", KVM_EXIT_INTR);
      if (outcome_ == kTimeout)
        o.Set("detail", "KVM_RUN ran past timeoutMs=" + std::to_string(timeoutMs_) +
                            " and was stopped; the guest is runaway or its batch too large");
      else if (outcome_ == kClosed)
        o.Set("detail", "the vCPU was closed while running");
      else
        o.Set("detail", "stopped by kick()");
      return o;
    }
    kvm_run* r = run_;
    o.Set("reason", ExitName(r->exit_reason));
    o.Set("code", r->exit_reason);
    char buf[256];
    switch (r->exit_reason) {
      case KVM_EXIT_IO: {
        Napi::Object io = Napi::Object::New(env);
        uint32_t data = 0;
        std::memcpy(&data, reinterpret_cast<uint8_t*>(r) + r->io.data_offset,
                    r->io.size <= 4 ? r->io.size : 4);
        io.Set("port", r->io.port);
        io.Set("out", r->io.direction == KVM_EXIT_IO_OUT);
        io.Set("size", r->io.size);
        io.Set("count", r->io.count);
        io.Set("data", data);
        o.Set("io", io);
        break;
      }
      case KVM_EXIT_MMIO: {
        Napi::Object m = Napi::Object::New(env);
        uint64_t data = 0;
        std::memcpy(&data, r->mmio.data, r->mmio.len <= 8 ? r->mmio.len : 8);
        m.Set("gpa", Napi::BigInt::New(env, static_cast<uint64_t>(r->mmio.phys_addr)));
        m.Set("write", r->mmio.is_write != 0);
        m.Set("len", r->mmio.len);
        m.Set("data", Napi::BigInt::New(env, data));
        o.Set("mmio", m);
        break;
      }
      case KVM_EXIT_FAIL_ENTRY:
        snprintf(buf, sizeof buf, "hardware entry failure reason 0x%llx on cpu %u: the vCPU state is invalid (check sregs)",
                 static_cast<unsigned long long>(r->fail_entry.hardware_entry_failure_reason),
                 r->fail_entry.cpu);
        o.Set("detail", buf);
        break;
      case KVM_EXIT_INTERNAL_ERROR: {
        static const char* sub[] = {"?", "emulation failure", "exception while delivering an exception",
                                    "event delivery failure", "unexpected exit reason"};
        uint32_t s = r->internal.suberror;
        std::string d = std::string("KVM internal error ") + std::to_string(s) + " (" +
                        (s < 5 ? sub[s] : "?") + ")";
        for (uint32_t i = 0; i < r->internal.ndata && i < 16; i++) {
          snprintf(buf, sizeof buf, "%s0x%llx", i ? " " : "; data ", static_cast<unsigned long long>(r->internal.data[i]));
          d += buf;
        }
        o.Set("detail", d);
        break;
      }
      case KVM_EXIT_SHUTDOWN:
        o.Set("detail", "the guest triple-faulted or shut down; check its IDT, GDT, TSS and page tables");
        break;
      case KVM_EXIT_EXCEPTION:
        snprintf(buf, sizeof buf, "exception %u, error code 0x%x", r->ex.exception, r->ex.error_code);
        o.Set("detail", buf);
        break;
      case KVM_EXIT_SYSTEM_EVENT:
        snprintf(buf, sizeof buf, "system event type %u", r->system_event.type);
        o.Set("detail", buf);
        break;
      case KVM_EXIT_DIRTY_RING_FULL:
        o.Set("detail", "the dirty ring is full: harvest it, call resetDirtyRings() and run again");
        break;
      default:
        break;
    }
    return o;
  }

  Napi::Promise::Deferred deferred_;
  KvmVcpu* vcpu_;
  Napi::ObjectReference self_;  // keeps the vCPU (and its kvm_run mapping) alive during the run
  uint64_t timeoutMs_;
  int fd_;
  kvm_run* run_;
  Outcome outcome_ = kExit;
  int err_ = 0;
  std::string call_;
  uint64_t ns_ = 0;
};

Napi::Function KvmVcpu::Define(Napi::Env env) {
  return DefineClass(env, "KvmVcpu",
                     {InstanceMethod<&KvmVcpu::GetRegs>("getRegs"),
                      InstanceMethod<&KvmVcpu::SetRegs>("setRegs"),
                      InstanceMethod<&KvmVcpu::SetSregs>("setSregs"),
                      InstanceMethod<&KvmVcpu::SetCpuid>("setCpuid"),
                      InstanceMethod<&KvmVcpu::Run>("run"),
                      InstanceMethod<&KvmVcpu::Kick>("kick"),
                      InstanceMethod<&KvmVcpu::HarvestDirtyRing>("harvestDirtyRing"),
                      InstanceAccessor<&KvmVcpu::Running>("running"),
                      InstanceAccessor<&KvmVcpu::Id>("id"),
                      InstanceMethod<&KvmVcpu::Close>("close")});
}

KvmVcpu::KvmVcpu(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KvmVcpu>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsExternal()) throw Napi::TypeError::New(env, "use KvmVm.createVcpu()");
  VcpuInit* init = info[0].As<Napi::External<VcpuInit>>().Data();
  sys_ = init->sys;
  vm_ = init->vm;
  fd_ = init->vcpu;
  id_ = init->id;
  mmapSize_ = init->mmapSize;
  void* p = mmap(nullptr, mmapSize_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_->fd, 0);
  if (p == MAP_FAILED) ThrowErrno(env, "mmap kvm_run");
  run_ = static_cast<kvm_run*>(p);
  if (init->ringBytes) {
    long page = sysconf(_SC_PAGESIZE);
    void* q = mmap(nullptr, init->ringBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_->fd,
                   static_cast<off_t>(page) * KVM_DIRTY_LOG_PAGE_OFFSET);
    if (q == MAP_FAILED) ThrowErrno(env, "mmap dirty ring");
    ring_ = static_cast<kvm_dirty_gfn*>(q);
    ringEntries_ = init->ringBytes / sizeof(kvm_dirty_gfn);
  }
}

KvmVcpu::~KvmVcpu() { Release(); }

void KvmVcpu::Release() {
  if (run_) munmap(run_, mmapSize_);
  run_ = nullptr;
  if (ring_) munmap(ring_, ringEntries_ * sizeof(kvm_dirty_gfn));
  ring_ = nullptr;
  fd_.reset();
  vm_.reset();
  sys_.reset();
  closePending_ = false;
}

int KvmVcpu::Fd(Napi::Env env) const {
  if (!fd_ || closePending_) throw Napi::Error::New(env, "vCPU " + std::to_string(id_) + " was closed");
  return fd_->fd;
}

// Register ioctls would block the JS thread on the vCPU mutex that KVM_RUN holds.
void KvmVcpu::Idle(Napi::Env env, const char* what) const {
  if (running_)
    throw Napi::Error::New(env, std::string(what) + ": vCPU " + std::to_string(id_) +
                                    " is running; await its run() first");
}

Napi::Value KvmVcpu::GetRegs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Idle(env, "getRegs");
  kvm_regs r{};
  if (ioctl(Fd(env), KVM_GET_REGS, &r) != 0) ThrowErrno(env, "KVM_GET_REGS");
  return RegsToJs(env, r);
}

Napi::Value KvmVcpu::SetRegs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Idle(env, "setRegs");
  int fd = Fd(env);
  kvm_regs r{};
  if (ioctl(fd, KVM_GET_REGS, &r) != 0) ThrowErrno(env, "KVM_GET_REGS");
  RegsFromJs(env, info[0].As<Napi::Object>(), r);
  if (ioctl(fd, KVM_SET_REGS, &r) != 0) ThrowErrno(env, "KVM_SET_REGS");
  return env.Undefined();
}

Napi::Value KvmVcpu::SetSregs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Idle(env, "setSregs");
  int fd = Fd(env);
  kvm_sregs s{};
  if (ioctl(fd, KVM_GET_SREGS, &s) != 0) ThrowErrno(env, "KVM_GET_SREGS");
  SregsFromJs(env, info[0].As<Napi::Object>(), s);
  if (ioctl(fd, KVM_SET_SREGS, &s) != 0) ThrowErrno(env, "KVM_SET_SREGS");
  return env.Undefined();
}

Napi::Value KvmVcpu::SetCpuid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Idle(env, "setCpuid");
  int fd = Fd(env);
  std::vector<uint8_t> c = SupportedCpuid(env, sys_->fd);
  if (ioctl(fd, KVM_SET_CPUID2, c.data()) != 0) ThrowErrno(env, "KVM_SET_CPUID2");
  return env.Undefined();
}

// run(timeoutMs) -> Promise<ExitInfo>; timeoutMs 0 means no limit.
Napi::Value KvmVcpu::Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Fd(env);
  if (running_.exchange(true))
    throw Napi::Error::New(env, "vCPU " + std::to_string(id_) + " is already running; await its run() first");
  uint64_t timeoutMs = info[0].IsUndefined() ? 0 : ToU64(env, info[0], "timeoutMs");
  stopReason_ = 0;
  auto* w = new RunWorker(env, this, Value(), timeoutMs);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

void KvmVcpu::Interrupt(int why) {
  stopReason_ = why;
  std::lock_guard<std::mutex> g(threadMu_);
  if (inRun_) pthread_kill(thread_, g_kickSignal);
}

// kick(): a running KVM_RUN returns and its promise resolves with reason 'intr'.
Napi::Value KvmVcpu::Kick(const Napi::CallbackInfo& info) {
  if (running_) Interrupt(1);
  return Napi::Boolean::New(info.Env(), running_.load());
}

// harvestDirtyRing() -> Float64Array [slot, offset, slot, offset, ...]: one pair (the slot, the
// page offset in it) for every entry KVM published since the last harvest. Entries are handed back
// (flag RESET); KVM reuses them after vm.resetDirtyRings().
Napi::Value KvmVcpu::HarvestDirtyRing(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Fd(env);
  if (!ring_) ThrowRange(env, "the dirty ring is not enabled: call vm.enableDirtyRing() before createVcpu()");
  std::vector<double> got;
  for (;;) {
    kvm_dirty_gfn* e = &ring_[ringFetch_ & (ringEntries_ - 1)];
    uint32_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
    if (!(flags & KVM_DIRTY_GFN_F_DIRTY)) break;
    got.push_back(e->slot & 0xffff);
    got.push_back(static_cast<double>(e->offset));
    __atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
    ringFetch_++;
  }
  Napi::Float64Array a = Napi::Float64Array::New(env, got.size());
  if (!got.empty()) std::memcpy(a.Data(), got.data(), got.size() * sizeof(double));
  return a;
}

Napi::Value KvmVcpu::Running(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), running_.load());
}

Napi::Value KvmVcpu::Id(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), id_); }

// Closing a running vCPU stops it; the pending run() resolves with reason 'closed' and the fds
// go away only then, so the worker never touches an unmapped kvm_run.
Napi::Value KvmVcpu::Close(const Napi::CallbackInfo& info) {
  if (running_) {
    closePending_ = true;
    Interrupt(2);
  } else {
    Release();
  }
  return info.Env().Undefined();
}

void InitVcpu(Napi::Env env, Napi::Object exports) {
  if (!g_kickSignal) {
    g_kickSignal = SIGRTMIN + 6;
    struct sigaction sa{};
    sa.sa_handler = OnKick;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must come back with EINTR
    sigaction(g_kickSignal, &sa, nullptr);
  }
  Napi::Function f = KvmVcpu::Define(env);
  Data(env).vcpuCtor = Napi::Persistent(f);
  exports.Set("KvmVcpu", f);
}

}  // namespace granule
