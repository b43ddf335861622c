#include "wpwatch.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "memory.h"

// Newer than some installed UAPI headers; whether the running kernel has them is asked at run time.
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif

namespace granule {

static constexpr uint64_t kPage = 4096;

static std::string ReadLine(const char* path) {
  std::ifstream f(path);
  std::string v;
  if (!(f >> v)) v = "unreadable";
  return v;
}

// KVM writes guest memory from the kernel (get_user_pages on the memslot's host address), so the
// userfaultfd must report kernel-mode faults: no UFFD_USER_MODE_ONLY. Such a descriptor comes from
// /dev/userfaultfd (Linux 6.1+, governed by the node's file mode) or from the syscall for a
// process with CAP_SYS_PTRACE or when vm.unprivileged_userfaultfd = 1.
static int OpenUffd(Napi::Env env, int flags, std::string* how) {
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  int eDev = errno;
  if (dev >= 0) {
    int fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
    eDev = errno;
    close(dev);
    if (fd >= 0) {
      *how = "/dev/userfaultfd";
      return fd;
    }
  }
  int fd = static_cast<int>(syscall(__NR_userfaultfd, flags));
  if (fd >= 0) {
    *how = "userfaultfd(2)";
    return fd;
  }
  int eSys = errno;
  std::string advice =
      "this process may not open a userfaultfd that sees kernel-mode faults, which KVM's writes to "
      "guest memory are (a UFFD_USER_MODE_ONLY one would not see them):\n"
      "  /dev/userfaultfd: " + ErrnoName(eDev) + " (" + std::to_string(eDev) + ")\n"
      "  userfaultfd(2) without UFFD_USER_MODE_ONLY: " + ErrnoName(eSys) + " (" + std::to_string(eSys) +
      "), vm.unprivileged_userfaultfd = " + ReadLine("/proc/sys/vm/unprivileged_userfaultfd") + "\n"
      "  To fix, one of:\n"
      "    - give this user read/write access to /dev/userfaultfd (Linux 6.1+), e.g. a udev rule\n"
      "      KERNEL==\"userfaultfd\", GROUP=\"kvm\", MODE=\"0660\" and membership of that group\n"
      "    - run with CAP_SYS_PTRACE (or as root)\n"
      "    - sudo sysctl -w vm.unprivileged_userfaultfd=1\n"
      "  ENOSYS or ENOENT everywhere means the kernel lacks CONFIG_USERFAULTFD; a container's seccomp\n"
      "  profile may also block the syscall. Until then protect whole frames with FramePool.protect\n"
      "  (every plane at once) or use the dirty log.";
  throw SysError(env, "userfaultfd", eSys, advice);
}

// The kernel's userfaultfd features, asked once with a throwaway descriptor: UFFDIO_API may be
// called only once per descriptor, and the real one must request exactly what it needs.
static uint64_t SupportedFeatures(Napi::Env env) {
  static std::mutex mu;  // worker threads may each load the addon
  static uint64_t features = 0;
  static bool known = false;
  std::lock_guard<std::mutex> lock(mu);
  if (known) return features;
  std::string how;
  Fd fd(OpenUffd(env, O_CLOEXEC | O_NONBLOCK, &how));
  uffdio_api api{};
  api.api = UFFD_API;
  if (ioctl(fd.fd, UFFDIO_API, &api) != 0)
    throw SysError(env, "UFFDIO_API", errno, "the userfaultfd API handshake failed");
  features = api.features;
  known = true;
  return features;
}

Napi::Function WriteWatch::Define(Napi::Env env) {
  return DefineClass(env, "WriteWatch",
                     {InstanceMethod<&WriteWatch::Protect>("protect"),
                      InstanceMethod<&WriteWatch::Drain>("drain"),
                      InstanceAccessor<&WriteWatch::Faults>("faults"),
                      InstanceAccessor<&WriteWatch::Lost>("lost"),
                      InstanceAccessor<&WriteWatch::How>("how"),
                      InstanceMethod<&WriteWatch::Close>("close")});
}

// new WriteWatch(hostMemory, logEntries): registers the whole mapping; nothing is protected yet.
WriteWatch::WriteWatch(const Napi::CallbackInfo& info) : Napi::ObjectWrap<WriteWatch>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "WriteWatch needs a pool view");
  MappingRef map = HostMemory::Unwrap(info[0].As<Napi::Object>())->Ref(env);
  uint64_t cap = info[1].IsUndefined() ? (1u << 20) : ToU64(env, info[1], "logEntries");
  if (cap == 0 || cap > (1ull << 28)) ThrowRange(env, "logEntries must be between 1 and 2^28");

  uint64_t have = SupportedFeatures(env);
  // Shared memory (a memfd is shmem) can be write-protected only with PTE markers, which also
  // protect pages this mapping has not faulted in yet (file-backed memory always uses them; the
  // UFFD_FEATURE_WP_UNPOPULATED feature is the same thing for anonymous memory), so there is
  // nothing to populate before protect().
  uint64_t want = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
  if ((have & want) != want) {
    char f[32];
    snprintf(f, sizeof f, "0x%llx", static_cast<unsigned long long>(have));
    throw SysError(env, "UFFDIO_API", EOPNOTSUPP,
                   std::string("this kernel's userfaultfd cannot write-protect shared memory (features ") + f +
                       (have & UFFD_FEATURE_PAGEFAULT_FLAG_WP ? " lack UFFD_FEATURE_WP_HUGETLBFS_SHMEM"
                                                              : " lack UFFD_FEATURE_PAGEFAULT_FLAG_WP") +
                       "):\n  it needs Linux 5.19 or later built with CONFIG_PTE_MARKER_UFFD_WP (x86-64: "
                       "CONFIG_HAVE_ARCH_USERFAULTFD_WP).\n  Until then protect whole frames with "
                       "FramePool.protect (every plane at once) or use the dirty log.");
  }
  std::string how;
  Fd uffd(OpenUffd(env, O_CLOEXEC | O_NONBLOCK, &how));
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = want;
  if (ioctl(uffd.fd, UFFDIO_API, &api) != 0)
    throw SysError(env, "UFFDIO_API", errno, "the kernel refused the write-protect features it advertised");
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<uint64_t>(map->addr);
  reg.range.len = map->bytes;
  // Write-protect mode only: missing-page faults (pages the view has not touched) are resolved by
  // the kernel as usual and never reach the handler.
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  if (ioctl(uffd.fd, UFFDIO_REGISTER, &reg) != 0) {
    int e = errno;
    throw SysError(env, "UFFDIO_REGISTER", e,
                   e == EBUSY ? "this view is already watched by another userfaultfd (one WriteWatch per "
                                "view): close that watch, or make another view with pool.view()"
                   : e == EINVAL ? "the range must be a whole shared-memory mapping (a FramePool view), 4 KiB "
                                   "aligned; anonymous private and other file mappings cannot be watched"
                   : e == EPERM ? "the mapping is not writable or the descriptor may not watch it"
                                : "see Documentation/admin-guide/mm/userfaultfd.rst");
  }
  if (!(reg.ioctls & (1ull << _UFFDIO_WRITEPROTECT)))
    throw SysError(env, "UFFDIO_REGISTER", EOPNOTSUPP,
                   "the kernel registered the view but offers no UFFDIO_WRITEPROTECT on it");
  Fd stop(eventfd(0, EFD_CLOEXEC));
  if (stop.fd < 0)
    throw SysError(env, "eventfd", errno, "out of file descriptors? raise `ulimit -n`");

  map_ = map;
  cap_ = cap;
  char desc[128];
  snprintf(desc, sizeof desc, "%s, features 0x%llx of 0x%llx", how.c_str(),
           static_cast<unsigned long long>(want), static_cast<unsigned long long>(have));
  how_ = desc;
  // Signals belong to the JS thread and the vCPU threads (kicks): block them all in the handler.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  uffd_ = uffd.fd;
  stopFd_ = stop.fd;
  int e = pthread_create(&thread_, nullptr, ThreadMain, this);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (e != 0) {
    uffd_ = stopFd_ = -1;  // the Fd guards close them
    map_.reset();
    throw SysError(env, "pthread_create", e, "could not start the userfaultfd handler thread");
  }
  uffd.fd = stop.fd = -1;  // owned by this object now
  started_ = true;
}

WriteWatch::~WriteWatch() { Stop(); }

void* WriteWatch::ThreadMain(void* self) {
  static_cast<WriteWatch*>(self)->Loop();
  return nullptr;
}

void WriteWatch::Abandon(const char* call, int err) {
  threadCall_ = call;
  threadErr_.store(err, std::memory_order_release);
  uffdio_range all{reinterpret_cast<uint64_t>(map_->addr), map_->bytes};
  ioctl(uffd_, UFFDIO_UNREGISTER, &all);
  ioctl(uffd_, UFFDIO_WAKE, &all);
}

void WriteWatch::Loop() {
  const uint64_t base = reinterpret_cast<uint64_t>(map_->addr), end = base + map_->bytes;
  pollfd p[2] = {{uffd_, POLLIN, 0}, {stopFd_, POLLIN, 0}};
  uffd_msg msgs[32];
  for (;;) {
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return Abandon("poll (userfaultfd handler thread)", errno);
    }
    if (p[1].revents) return;
    ssize_t k = read(uffd_, msgs, sizeof msgs);
    if (k < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return Abandon("read (userfaultfd handler thread)", errno);
    }
    for (size_t i = 0; i < static_cast<size_t>(k) / sizeof msgs[0]; i++) {
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;  // no other events were asked for
      uint64_t a = msgs[i].arg.pagefault.address & ~(kPage - 1);
      if (a < base || a >= end) continue;
      if (!(msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)) {
        // Not registered for missing faults, so none should come; never leave a writer blocked.
        uffdio_range r{a, kPage};
        ioctl(uffd_, UFFDIO_WAKE, &r);
        continue;
      }
      faults_.fetch_add(1, std::memory_order_relaxed);
      std::lock_guard<std::mutex> lock(mu_);
      try {
        if (log_.size() < cap_) log_.push_back(static_cast<double>(a - base));
        else lostSinceDrain_++, lost_.fetch_add(1, std::memory_order_relaxed);
      } catch (const std::bad_alloc&) {
        lostSinceDrain_++;
        lost_.fetch_add(1, std::memory_order_relaxed);
      }
      // Clearing WP without DONTWAKE also wakes the faulting thread. EAGAIN: the mm was changing.
      uffdio_writeprotect wp{};
      wp.range = {a, kPage};
      wp.mode = 0;
      int tries = 0;
      while (ioctl(uffd_, UFFDIO_WRITEPROTECT, &wp) != 0) {
        if (errno == EAGAIN && ++tries < 1000) continue;
        return Abandon("UFFDIO_WRITEPROTECT (clearing one page in the handler thread)", errno);
      }
    }
  }
}

void WriteWatch::Open(Napi::Env env) const {
  if (!started_) throw Napi::Error::New(env, "this WriteWatch was closed; create a new one");
  int e = threadErr_.load(std::memory_order_acquire);
  if (e)
    throw SysError(env, threadCall_, e,
                   "the handler thread stopped watching this view: it unregistered the view and woke every "
                   "blocked writer, so writes since then were not logged; close this watch and create a new one");
}

// protect(offset, len, on): UFFDIO_WRITEPROTECT of [offset, offset+len) of the view. Turning it on
// also fires the MMU notifiers, so KVM drops its writable mappings of these pages; turning it off
// wakes writers waiting on them. Re-arm between runs: a page a running writer is faulting on may be
// logged by the next drain() instead of this one, never lost.
Napi::Value WriteWatch::Protect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Open(env);
  uint64_t off = ToU64(env, info[0], "offset"), len = ToU64(env, info[1], "length");
  bool on = info[2].ToBoolean();
  if (off % kPage || len % kPage || len == 0 || off + len > map_->bytes || off + len < off)
    ThrowRange(env, "protect range [" + std::to_string(off) + ", +" + std::to_string(len) +
                        ") must be 4 KiB aligned, non-empty and inside the " + std::to_string(map_->bytes) +
                        "-byte view");
  uffdio_writeprotect wp{};
  wp.range = {reinterpret_cast<uint64_t>(map_->addr) + off, len};
  wp.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
  std::lock_guard<std::mutex> lock(mu_);
  int tries = 0;
  while (ioctl(uffd_, UFFDIO_WRITEPROTECT, &wp) != 0) {
    int e = errno;
    if (e == EAGAIN && ++tries < 1000) continue;
    throw SysError(env, "UFFDIO_WRITEPROTECT", e,
                   e == ENOMEM ? "the kernel could not allocate page tables for the protection markers"
                   : e == ENOENT ? "the range is no longer registered (the view was unmapped?)"
                                 : "offset and length must be 4 KiB aligned and inside the watched view");
  }
  return env.Undefined();
}

// drain() -> Float64Array of byte offsets (4 KiB aligned) of the pages whose first write since
// they were protected faulted, in fault order, since the last drain. A log that overflowed throws:
// some written pages are unknown, so the caller must treat every protected page as written.
Napi::Value WriteWatch::Drain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Open(env);
  std::vector<double> got;
  uint64_t lost;
  {
    std::lock_guard<std::mutex> lock(mu_);
    got.swap(log_);
    lost = lostSinceDrain_;
    lostSinceDrain_ = 0;
  }
  if (lost)
    throw Napi::Error::New(env, "WriteWatch log overflowed: " + std::to_string(lost) +
                                    " write faults since the last drain were not logged (the log holds " +
                                    std::to_string(cap_) + " entries); treat every protected page as "
                                    "written, and drain more often or create the watch with a larger logEntries");
  Napi::Float64Array a = Napi::Float64Array::New(env, got.size());
  if (!got.empty()) std::memcpy(a.Data(), got.data(), got.size() * sizeof(double));
  return a;
}

Napi::Value WriteWatch::Faults(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(faults_.load(std::memory_order_relaxed)));
}

Napi::Value WriteWatch::Lost(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(lost_.load(std::memory_order_relaxed)));
}

Napi::Value WriteWatch::How(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), how_); }

// The thread stops before the uffd closes (no fd reuse under it); closing the uffd then releases
// the view and wakes any writer still waiting, and leftover protection no longer traps.
void WriteWatch::Stop() {
  if (!started_) return;
  started_ = false;
  uint64_t one = 1;
  while (write(stopFd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
  pthread_join(thread_, nullptr);
  close(uffd_);
  close(stopFd_);
  uffd_ = stopFd_ = -1;
  map_.reset();
}

Napi::Value WriteWatch::Close(const Napi::CallbackInfo& info) {
  Stop();
  return info.Env().Undefined();
}

}  // namespace granule
