// KvmError: every failing system call reaches JS as `${call} failed: ${code} (${errno}): ${advice}`.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"

namespace granule {

Fd::~Fd() {
  if (fd >= 0) ::close(fd);
}

Mapping::~Mapping() {
  if (addr && addr != MAP_FAILED) ::munmap(addr, bytes);
  if (fd >= 0) ::close(fd);
}

AddonData& Data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

std::string ErrnoName(int err) {
  const char* n = strerrorname_np(err);
  return n ? n : "E" + std::to_string(err);
}

static std::string MaxMapCount() {
  std::ifstream f("/proc/sys/vm/max_map_count");
  std::string v;
  if (!(f >> v)) v = "?";
  return v;
}

std::string Advice(const std::string& call, int err) {
  if (call == "open /dev/kvm" || call.rfind("open ", 0) == 0) {
    if (err == ENOENT || err == ENODEV || err == ENXIO)
      return "there is no KVM device: load the module (modprobe kvm_intel or kvm_amd), enable "
             "VT-x/AMD-V in the firmware, or inside a VM enable nested virtualization; until then "
             "use the simulator backend";
    if (err == EACCES || err == EPERM)
      return "no permission on the KVM device: add yourself to its group (sudo usermod -aG kvm "
             "$USER, then log in again) or ask the administrator for access";
    if (err == EBUSY) return "another hypervisor holds the virtualization extensions; stop it";
  }
  if (call == "KVM_CREATE_VM") {
    if (err == ENOMEM || err == EMFILE || err == ENFILE)
      return "out of memory or file descriptors: close other VMs (vm.close()) or raise `ulimit -n`";
    if (err == EINVAL) return "the kernel refused the VM type; this host's KVM may be restricted";
  }
  if (call == "KVM_SET_USER_MEMORY_REGION") {
    if (err == EEXIST)
      return "the guest-physical range overlaps another memslot; delete that slot first or pick a "
             "free GPA range";
    if (err == EINVAL)
      return "gpa, size and host offset must be 4 KiB aligned, the slot id below "
             "KVM_CAP_NR_MEMSLOTS, the flags supported (readonly needs KVM_CAP_READONLY_MEM), and a "
             "live slot cannot be moved or resized (delete it first; only its flags may change)";
    if (err == EFAULT) return "the host range of the slot is not mapped (pool closed or too small)";
    if (err == ENOMEM || err == ENOSPC)
      return "the kernel ran out of memory or memslots; use fewer, larger slots";
  }
  if (call == "KVM_GET_DIRTY_LOG") {
    if (err == ENOENT) return "the slot does not exist or was created without logDirty";
    if (err == ENXIO || err == EINVAL)
      return "this VM tracks dirty pages with the dirty ring, not bitmaps; harvest the ring instead";
  }
  if (call == "KVM_CLEAR_DIRTY_LOG") {
    if (err == EINVAL)
      return "the first page must be a multiple of 64 and the count a multiple of 64 unless it "
             "ends at the slot's end; enableManualDirtyProtect() must have been called";
    if (err == ENOENT) return "the slot does not exist or was created without logDirty";
  }
  if (call.rfind("KVM_ENABLE_CAP", 0) == 0) {
    if (call.find("DIRTY_LOG_RING") != std::string::npos)
      return "the ring needs a power-of-two number of entries within limits().dirtyRingMax and "
             "must be enabled before the first vCPU is created";
    if (err == EINVAL) return "this KVM does not support the capability (see vm.limits())";
  }
  if (call == "KVM_CREATE_VCPU") {
    if (err == EEXIST) return "a vCPU with this id already exists in the VM";
    if (err == EINVAL) return "the vCPU id must be below limits().maxVcpus";
    if (err == ENOMEM || err == EMFILE) return "out of memory or file descriptors";
  }
  if (call == "KVM_RUN") {
    if (err == EFAULT)
      return "the guest touched a memslot whose host memory is gone (pool closed?) or a bad "
             "kvm_run page; keep pools open while their slots exist";
    if (err == EINVAL || err == ENOEXEC)
      return "KVM rejected the vCPU state; check sregs (CR0/CR4/EFER, segment descriptors) and "
             "that setCpuid() ran";
    if (err == EBUSY || err == EAGAIN) return "the vCPU is busy; retry after the current run ends";
  }
  if (call == "KVM_RESET_DIRTY_RINGS" && err == EINVAL) return "the dirty ring is not enabled";
  if (call == "KVM_SET_CPUID2" && (err == EINVAL || err == E2BIG))
    return "the kernel refused the CPUID table; call setCpuid() before the first run";
  if (call == "mmap" || call == "mprotect" || call == "mmap kvm_run" || call == "mmap dirty ring") {
    if (err == ENOMEM)
      return "out of memory or out of mappings (vm.max_map_count is " + MaxMapCount() +
             "; raise it with sudo sysctl -w vm.max_map_count=1048576 or protect fewer ranges)";
    if (err == EINVAL) return "offset and length must be 4 KiB aligned and inside the mapping";
  }
  if (call == "memfd_create" || call == "ftruncate") {
    if (err == ENOMEM || err == ENOSPC || err == EFBIG)
      return "not enough memory for the frame pool; use a smaller pool";
    if (err == EMFILE || err == ENFILE) return "out of file descriptors; raise `ulimit -n`";
  }
  if (err == ENOTTY || err == ENOSYS)
    return "this kernel's KVM does not implement " + call + "; check vm.limits()";
  if (err == EBADF) return "the object was closed; create a new one";
  return "see the KVM API documentation (Documentation/virt/kvm/api.rst) for " + call;
}

Napi::Error SysError(Napi::Env env, const std::string& call, int err, const std::string& advice) {
  std::string code = ErrnoName(err);
  std::string msg = call + " failed: " + code + " (" + std::to_string(err) + "): " + advice;
  AddonData& d = Data(env);
  if (!d.errorClass.IsEmpty()) {
    Napi::Object e = d.errorClass.New({Napi::String::New(env, msg), Napi::String::New(env, call),
                                       Napi::Number::New(env, err), Napi::String::New(env, code)});
    return Napi::Error(env, e);
  }
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("name", Napi::String::New(env, "KvmError"));
  e.Set("ioctl", Napi::String::New(env, call));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("code", Napi::String::New(env, code));
  return e;
}

Napi::Error KvmError(Napi::Env env, const std::string& call, int err, const std::string& extra) {
  std::string advice = Advice(call, err);
  if (!extra.empty()) advice += " (" + extra + ")";
  return SysError(env, call, err, advice);
}

void ThrowErrno(Napi::Env env, const std::string& call, const std::string& extra) {
  throw KvmError(env, call, errno, extra);
}

void ThrowRange(Napi::Env env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

uint64_t ToU64(Napi::Env env, const Napi::Value& v, const char* what) {
  if (v.IsBigInt()) {
    bool lossless = true;
    uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) ThrowRange(env, std::string(what) + " does not fit in 64 bits");
    return x;
  }
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (d != d || d < -9223372036854775808.0 || d >= 18446744073709551616.0)
      ThrowRange(env, std::string(what) + " is not a 64-bit integer");
    return d < 0 ? static_cast<uint64_t>(static_cast<int64_t>(d)) : static_cast<uint64_t>(d);
  }
  throw Napi::TypeError::New(env, std::string(what) + " must be a number or bigint");
}

}  // namespace granule
