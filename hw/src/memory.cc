#include "memory.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "wpwatch.h"

namespace granule {

Napi::Function HostMemory::Define(Napi::Env env) {
  return DefineClass(env, "HostMemory",
                     {InstanceAccessor<&HostMemory::Buffer>("buffer"),
                      InstanceAccessor<&HostMemory::Bytes>("bytes"),
                      InstanceMethod<&HostMemory::Protect>("protect"),
                      InstanceMethod<&HostMemory::View>("view"),
                      InstanceMethod<&HostMemory::Close>("close")});
}

// new HostMemory(bytes, 'memfd' | 'anon'), or from view(): new HostMemory(External<MappingRef>)
HostMemory::HostMemory(const Napi::CallbackInfo& info) : Napi::ObjectWrap<HostMemory>(info) {
  Napi::Env env = info.Env();
  if (info[0].IsExternal()) {
    Adopt(env, *info[0].As<Napi::External<MappingRef>>().Data());
    return;
  }
  uint64_t bytes = ToU64(env, info[0], "bytes");
  std::string kind = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "memfd";
  if (bytes == 0 || bytes % 4096 != 0)
    ThrowRange(env, "memory size " + std::to_string(bytes) + " must be a positive multiple of 4096");
  auto m = std::make_shared<Mapping>();
  m->bytes = bytes;
  if (kind == "memfd") {
    // MFD_CLOEXEC: a child process must not keep the pool alive.
    m->fd = memfd_create("granule-frames", MFD_CLOEXEC);
    if (m->fd < 0) ThrowErrno(env, "memfd_create");
    if (ftruncate(m->fd, static_cast<off_t>(bytes)) != 0)
      ThrowErrno(env, "ftruncate", std::to_string(bytes) + " bytes");
    m->addr = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
  } else if (kind == "anon") {
    m->addr = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  } else {
    ThrowRange(env, "memory kind must be 'memfd' or 'anon', not '" + kind + "'");
  }
  if (m->addr == MAP_FAILED) {
    m->addr = nullptr;
    ThrowErrno(env, "mmap", std::to_string(bytes) + " bytes");
  }
  Adopt(env, m);
}

void HostMemory::Adopt(Napi::Env env, MappingRef m) {
  map_ = m;
  bufferHold_ = new MappingRef(m);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
      env, m->addr, m->bytes, [](Napi::Env, void*, MappingRef* hold) { delete hold; }, bufferHold_);
  buffer_ = Napi::Persistent(ab);
}

HostMemory::~HostMemory() = default;

MappingRef HostMemory::Ref(Napi::Env env) const {
  if (!map_) throw Napi::Error::New(env, "this memory was closed; create a new one");
  return map_;
}

Napi::Value HostMemory::Buffer(const Napi::CallbackInfo& info) {
  if (buffer_.IsEmpty()) throw Napi::Error::New(info.Env(), "this memory was closed");
  return buffer_.Value();
}

Napi::Value HostMemory::Bytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), map_ ? static_cast<double>(map_->bytes) : 0);
}

// protect(offset, len, 'r' | 'rw' | 'none'): host-side protection of part of the pool. mprotect
// reaches KVM through its MMU notifier, so the guest's next write to such a frame, through any
// alias plane, exits like a write to a KVM_MEM_READONLY slot (KVM_EXIT_MMIO, measured here).
Napi::Value HostMemory::Protect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MappingRef m = Ref(env);
  uint64_t off = ToU64(env, info[0], "offset"), len = ToU64(env, info[1], "length");
  std::string p = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
  int prot = p == "r" ? PROT_READ : p == "rw" ? PROT_READ | PROT_WRITE : p == "none" ? PROT_NONE : -1;
  if (prot < 0) ThrowRange(env, "protection must be 'r', 'rw' or 'none', not '" + p + "'");
  if (off % 4096 || len % 4096 || off + len > m->bytes || off + len < off)
    ThrowRange(env, "protect range [" + std::to_string(off) + ", +" + std::to_string(len) +
                        ") must be 4 KiB aligned and inside the " + std::to_string(m->bytes) +
                        "-byte mapping");
  if (mprotect(static_cast<char*>(m->addr) + off, len, prot) != 0) ThrowErrno(env, "mprotect");
  return env.Undefined();
}

// view(): the same memfd mapped again, MAP_SHARED, whole. The bytes are the pool's, but the page
// tables are the view's own, so protection (mprotect, userfaultfd write-protect) of a view leaves
// the pool and the other views writable. The view owns a dup of the memfd so that it can make
// views too and outlives the pool object; the mapping goes when its last memslot or watch does.
Napi::Value HostMemory::View(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MappingRef m = Ref(env);
  if (m->fd < 0) ThrowRange(env, "only a memfd frame pool (or a view of one) has views, not anonymous memory");
  auto v = std::make_shared<Mapping>();
  v->bytes = m->bytes;
  v->fd = fcntl(m->fd, F_DUPFD_CLOEXEC, 0);
  if (v->fd < 0)
    throw SysError(env, "fcntl(F_DUPFD_CLOEXEC)", errno,
                   "each view holds its own descriptor of the memfd; out of file descriptors? raise `ulimit -n`");
  v->addr = mmap(nullptr, v->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
  if (v->addr == MAP_FAILED) {
    v->addr = nullptr;
    ThrowErrno(env, "mmap", "a view of " + std::to_string(v->bytes) + " bytes");
  }
  return Data(env).memoryCtor.New({Napi::External<MappingRef>::New(env, &v)});
}

// Detaching first makes later JS access a TypeError instead of a use-after-unmap; the memory
// itself goes away when no memslot holds it any more.
Napi::Value HostMemory::Close(const Napi::CallbackInfo& info) {
  if (!buffer_.IsEmpty()) {
    Napi::ArrayBuffer ab = buffer_.Value();
    if (!ab.IsDetached()) ab.Detach();
    if (bufferHold_) bufferHold_->reset();
    bufferHold_ = nullptr;
    buffer_.Reset();
  }
  map_.reset();
  return info.Env().Undefined();
}

}  // namespace granule
