#include "vm.h"

#include <cerrno>
#include <cstring>
#include "kvm_abi.h"
#include <sys/ioctl.h>

#include "memory.h"
#include "vcpu.h"

namespace granule {

static constexpr uint64_t kPage = 4096;

std::vector<uint8_t> SupportedCpuid(Napi::Env env, int sysFd) {
  // The kernel says E2BIG until the buffer is large enough; it does not say how large.
  for (uint32_t n = 64; n <= 4096; n *= 2) {
    std::vector<uint8_t> buf(sizeof(kvm_cpuid2) + n * sizeof(kvm_cpuid_entry2));
    auto* c = reinterpret_cast<kvm_cpuid2*>(buf.data());
    c->nent = n;
    if (ioctl(sysFd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
      buf.resize(sizeof(kvm_cpuid2) + c->nent * sizeof(kvm_cpuid_entry2));
      return buf;
    }
    if (errno != E2BIG) ThrowErrno(env, "KVM_GET_SUPPORTED_CPUID");
  }
  ThrowErrno(env, "KVM_GET_SUPPORTED_CPUID");
}

Napi::Function KvmVm::Define(Napi::Env env) {
  return DefineClass(
      env, "KvmVm",
      {InstanceMethod<&KvmVm::SetMemory>("setMemory"),
       InstanceMethod<&KvmVm::DeleteMemory>("deleteMemory"),
       InstanceMethod<&KvmVm::EnableManualDirtyProtect>("enableManualDirtyProtect"),
       InstanceMethod<&KvmVm::GetDirtyLog>("getDirtyLog"),
       InstanceMethod<&KvmVm::ClearDirtyLog>("clearDirtyLog"),
       InstanceMethod<&KvmVm::EnableDirtyRing>("enableDirtyRing"),
       InstanceMethod<&KvmVm::ResetDirtyRings>("resetDirtyRings"),
       InstanceMethod<&KvmVm::CreateVcpu>("createVcpu"),
       InstanceMethod<&KvmVm::Limits>("limits"),
       InstanceMethod<&KvmVm::CheckExtension>("checkExtension"),
       InstanceMethod<&KvmVm::Slots>("slots"),
       InstanceMethod<&KvmVm::Close>("close")});
}

KvmVm::KvmVm(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KvmVm>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsExternal()) throw Napi::TypeError::New(env, "use KvmSystem.createVm()");
  VmInit* init = info[0].As<Napi::External<VmInit>>().Data();
  sys_ = init->sys;
  vm_ = init->vm;
  maxMemslots_ = Cap(KVM_CAP_NR_MEMSLOTS);
}

FdRef KvmVm::Vm(Napi::Env env) const {
  if (!vm_) throw Napi::Error::New(env, "the VM was closed; create a new one");
  return vm_;
}

// Capabilities asked on the VM fd: some (memslots, dirty ring size) depend on the VM.
int KvmVm::Cap(int cap) const {
  int r = vm_ ? ioctl(vm_->fd, KVM_CHECK_EXTENSION, cap) : -1;
  if (r < 0 && sys_) r = ioctl(sys_->fd, KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

// setMemory(slot, gpa, memory, offset, bytes, flags{logDirty, readonly})
Napi::Value KvmVm::SetMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FdRef vm = Vm(env);
  uint32_t slot = info[0].As<Napi::Number>().Uint32Value();
  uint64_t gpa = ToU64(env, info[1], "gpa");
  if (!info[2].IsObject()) throw Napi::TypeError::New(env, "memory must be a FramePool or GuestMemory");
  HostMemory* mem = HostMemory::Unwrap(info[2].As<Napi::Object>());
  MappingRef map = mem->Ref(env);
  uint64_t offset = ToU64(env, info[3], "offset"), bytes = ToU64(env, info[4], "bytes");
  Napi::Object f = info[5].IsObject() ? info[5].As<Napi::Object>() : Napi::Object::New(env);
  bool logDirty = f.Get("logDirty").ToBoolean(), readonly = f.Get("readonly").ToBoolean();

  std::string where = "memslot " + std::to_string(slot);
  if (static_cast<int>(slot) >= maxMemslots_)
    ThrowRange(env, where + ": KVM_CAP_NR_MEMSLOTS is " + std::to_string(maxMemslots_) +
                        " here, so slot ids go up to " + std::to_string(maxMemslots_ - 1) +
                        "; use fewer alias planes");
  if (gpa % kPage || offset % kPage || bytes % kPage || bytes == 0)
    ThrowRange(env, where + ": gpa, offset and size must be 4 KiB aligned and the size positive");
  if (offset + bytes > map->bytes || offset + bytes < offset)
    ThrowRange(env, where + ": [" + std::to_string(offset) + ", +" + std::to_string(bytes) +
                        ") exceeds the " + std::to_string(map->bytes) + "-byte host memory");
  if (readonly && !Cap(KVM_CAP_READONLY_MEM))
    ThrowRange(env, where + ": this KVM lacks KVM_CAP_READONLY_MEM; protect the pool host-side instead");

  kvm_userspace_memory_region r{};
  r.slot = slot;
  r.flags = (logDirty ? KVM_MEM_LOG_DIRTY_PAGES : 0) | (readonly ? KVM_MEM_READONLY : 0);
  r.guest_phys_addr = gpa;
  r.memory_size = bytes;
  r.userspace_addr = reinterpret_cast<uint64_t>(static_cast<char*>(map->addr) + offset);
  if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r) != 0) {
    char extra[96];
    snprintf(extra, sizeof extra, "slot %u, gpa 0x%llx, %llu bytes", slot,
             static_cast<unsigned long long>(gpa), static_cast<unsigned long long>(bytes));
    ThrowErrno(env, "KVM_SET_USER_MEMORY_REGION", extra);
  }
  slots_[slot] = Slot{gpa, bytes, offset, r.flags, map};
  return env.Undefined();
}

Napi::Value KvmVm::DeleteMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FdRef vm = Vm(env);
  uint32_t slot = info[0].As<Napi::Number>().Uint32Value();
  auto it = slots_.find(slot);
  if (it == slots_.end()) ThrowRange(env, "memslot " + std::to_string(slot) + " does not exist");
  kvm_userspace_memory_region r{};
  r.slot = slot;
  r.guest_phys_addr = it->second.gpa;
  r.memory_size = 0;
  if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r) != 0)
    ThrowErrno(env, "KVM_SET_USER_MEMORY_REGION", "deleting slot " + std::to_string(slot));
  slots_.erase(it);
  return env.Undefined();
}

// Without INITIALLY_SET: a fresh slot's bitmap starts clear, so the first getDirtyLog reports only
// what the guest wrote. With manual protect, KVM_GET_DIRTY_LOG no longer re-protects; the pages
// stay writable until KVM_CLEAR_DIRTY_LOG.
Napi::Value KvmVm::EnableManualDirtyProtect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FdRef vm = Vm(env);
  if (!(Cap(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE))
    throw KvmError(env, "KVM_ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2)", ENOTSUP);
  kvm_enable_cap c{};
  c.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
  c.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
  if (ioctl(vm->fd, KVM_ENABLE_CAP, &c) != 0)
    ThrowErrno(env, "KVM_ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2)");
  manualProtect_ = true;
  return env.Undefined();
}

const KvmVm::Slot& KvmVm::LoggedSlot(Napi::Env env, uint32_t slot, const char* call) const {
  auto it = slots_.find(slot);
  if (it == slots_.end())
    ThrowRange(env, std::string(call) + ": memslot " + std::to_string(slot) + " does not exist");
  if (!(it->second.flags & KVM_MEM_LOG_DIRTY_PAGES))
    ThrowRange(env, std::string(call) + ": memslot " + std::to_string(slot) +
                        " was created without logDirty");
  return it->second;
}

// getDirtyLog(slot) -> Uint8Array, bit i = page i of the slot. The kernel writes a whole
// long-aligned bitmap for the slot, so the buffer is sized from the slot, not from the caller.
Napi::Value KvmVm::GetDirtyLog(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FdRef vm = Vm(env);
  uint32_t slot = info[0].As<Napi::Number>().Uint32Value();
  const Slot& s = LoggedSlot(env, slot, "getDirtyLog");
  uint64_t pages = s.bytes / kPage;
  size_t words = (pages + 63) / 64;
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, words * 8);
  std::memset(ab.Data(), 0, words * 8);
  kvm_dirty_log d{};
  d.slot = slot;
  d.dirty_bitmap = ab.Data();
  if (ioctl(vm->fd, KVM_GET_DIRTY_LOG, &d) != 0)
    ThrowErrno(env, "KVM_GET_DIRTY_LOG", "slot " + std::to_string(slot));
  return Napi::Uint8Array::New(env, (pages + 7) / 8, ab, 0);
}

// clearDirtyLog(slot, first, num, bitmap): re-protects (and clears) the pages whose bits are set.
Napi::Value KvmVm::ClearDirtyLog(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FdRef vm = Vm(env);
  uint32_t slot = info[0].As<Napi::Number>().Uint32Value();
  const Slot& s = LoggedSlot(env, slot, "clearDirtyLog");
  uint64_t pages = s.bytes / kPage;
  uint64_t first = ToU64(env, info[1], "first"), num = ToU64(env, info[2], "num");
  if (!manualProtect_)
    ThrowRange(env, "clearDirtyLog needs enableManualDirtyProtect() first (before the slots are logged)");
  if (first % 64 || (num % 64 && first + num != pages) || first + num > pages || num == 0)
    ThrowRange(env, "clearDirtyLog(slot " + std::to_string(slot) + ", " + std::to_string(first) +
                        ", " + std::to_string(num) + "): first must be a multiple of 64, num a " +
                        "multiple of 64 unless it reaches the slot's end (" + std::to_string(pages) +
                        " pages), and the range inside the slot");
  if (!info[3].IsTypedArray()) throw Napi::TypeError::New(env, "bitmap must be a Uint8Array");
  Napi::Uint8Array bm = info[3].As<Napi::Uint8Array>();
  size_t need = (num + 7) / 8;
  if (bm.ByteLength() < need)
    ThrowRange(env, "clearDirtyLog bitmap has " + std::to_string(bm.ByteLength()) + " bytes, " +
                        std::to_string(num) + " pages need " + std::to_string(need));
  // The kernel reads whole longs; copy so it never reads past the caller's array.
  std::vector<uint64_t> words((num + 63) / 64, 0);
  std::memcpy(words.data(), bm.Data(), need);
  kvm_clear_dirty_log c{};
  c.slot = slot;
  c.first_page = first;
  c.num_pages = static_cast<uint32_t>(num);
  c.dirty_bitmap = words.data();
  if (ioctl(vm->fd, KVM_CLEAR_DIRTY_LOG, &c) != 0)
    ThrowErrno(env, "KVM_CLEAR_DIRTY_LOG", "slot " + std::to_string(slot));
  return env.Undefined();
}

// enableDirtyRing(entries): per-vCPU rings of `entries` kvm_dirty_gfn. Must precede createVcpu.
Napi::Value KvmVm::EnableDirtyRing(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FdRef vm = Vm(env);
  uint32_t entries = info[0].As<Napi::Number>().Uint32Value();
  int cap = KVM_CAP_DIRTY_LOG_RING;
  int maxBytes = Cap(cap);
  if (maxBytes <= 0) {
    cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
    maxBytes = Cap(cap);
  }
  if (maxBytes <= 0) throw KvmError(env, "KVM_ENABLE_CAP(DIRTY_LOG_RING)", ENOTSUP);
  uint64_t bytes = static_cast<uint64_t>(entries) * sizeof(kvm_dirty_gfn);
  if (entries == 0 || (entries & (entries - 1)) || bytes < kPage || bytes > static_cast<uint64_t>(maxBytes))
    ThrowRange(env, "dirty ring entries must be a power of two from " + std::to_string(kPage / sizeof(kvm_dirty_gfn)) +
                        " to " + std::to_string(maxBytes / sizeof(kvm_dirty_gfn)) + ", not " + std::to_string(entries));
  if (vcpus_ > 0) ThrowRange(env, "enableDirtyRing must be called before the first createVcpu");
  kvm_enable_cap c{};
  c.cap = cap;
  c.args[0] = bytes;
  if (ioctl(vm->fd, KVM_ENABLE_CAP, &c) != 0) ThrowErrno(env, "KVM_ENABLE_CAP(DIRTY_LOG_RING)");
  ringBytes_ = static_cast<uint32_t>(bytes);
  return env.Undefined();
}

Napi::Value KvmVm::ResetDirtyRings(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int r = ioctl(Vm(env)->fd, KVM_RESET_DIRTY_RINGS, 0);
  if (r < 0) ThrowErrno(env, "KVM_RESET_DIRTY_RINGS");
  return Napi::Number::New(env, r);
}

Napi::Value KvmVm::CreateVcpu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FdRef vm = Vm(env);
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  int fd = ioctl(vm->fd, KVM_CREATE_VCPU, id);
  if (fd < 0) ThrowErrno(env, "KVM_CREATE_VCPU", "id " + std::to_string(id));
  auto vcpuFd = std::make_shared<Fd>(fd);
  int mmapSize = ioctl(sys_->fd, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmapSize < 0) ThrowErrno(env, "KVM_GET_VCPU_MMAP_SIZE");
  vcpus_++;
  VcpuInit init{sys_, vm, vcpuFd, static_cast<size_t>(mmapSize), ringBytes_, id};
  return Data(env).vcpuCtor.New({Napi::External<VcpuInit>::New(env, &init)});
}

Napi::Value KvmVm::Limits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Vm(env);
  Napi::Object o = Napi::Object::New(env);
  int maxVcpus = Cap(KVM_CAP_MAX_VCPUS);
  if (maxVcpus <= 0) maxVcpus = Cap(KVM_CAP_NR_VCPUS);
  int ring = Cap(KVM_CAP_DIRTY_LOG_RING);
  if (ring <= 0) ring = Cap(KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
  o.Set("maxMemslots", maxMemslots_);
  o.Set("maxVcpus", maxVcpus);
  o.Set("dirtyRingMax", ring > 0 ? ring / static_cast<int>(sizeof(kvm_dirty_gfn)) : 0);
  o.Set("manualProtect", (Cap(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) != 0);
  o.Set("readonlyMem", Cap(KVM_CAP_READONLY_MEM) > 0);
  // MAXPHYADDR bounds the GPAs of alias planes.
  int physBits = 36;
  std::vector<uint8_t> cpuid = SupportedCpuid(env, sys_->fd);
  auto* c = reinterpret_cast<kvm_cpuid2*>(cpuid.data());
  for (uint32_t i = 0; i < c->nent; i++)
    if (c->entries[i].function == 0x80000008) physBits = c->entries[i].eax & 0xff;
  o.Set("physAddrBits", physBits);
  return o;
}

Napi::Value KvmVm::CheckExtension(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int r = ioctl(Vm(env)->fd, KVM_CHECK_EXTENSION, info[0].As<Napi::Number>().Int32Value());
  if (r < 0) ThrowErrno(env, "KVM_CHECK_EXTENSION");
  return Napi::Number::New(env, r);
}

// slots() -> [{slot, gpa, bytes, offset, logDirty, readonly}], what this VM has registered.
Napi::Value KvmVm::Slots(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array a = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& [id, s] : slots_) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("slot", id);
    o.Set("gpa", Napi::BigInt::New(env, s.gpa));
    o.Set("bytes", static_cast<double>(s.bytes));
    o.Set("offset", static_cast<double>(s.offset));
    o.Set("logDirty", (s.flags & KVM_MEM_LOG_DIRTY_PAGES) != 0);
    o.Set("readonly", (s.flags & KVM_MEM_READONLY) != 0);
    a.Set(i++, o);
  }
  return a;
}

Napi::Value KvmVm::Close(const Napi::CallbackInfo& info) {
  vm_.reset();
  slots_.clear();
  return info.Env().Undefined();
}

}  // namespace granule
