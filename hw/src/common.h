// Shared pieces of the granule_kvm addon: fd ownership, host mappings, per-addon state and the
// KvmError thrown for every failing system call.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace granule {

// KVM's fds form a hierarchy (system -> VM -> vCPU) but the kernel keeps each parent alive as long
// as a child fd exists; we only need each JS object to own its own fd, shared so that a child can
// still issue system ioctls (KVM_GET_SUPPORTED_CPUID) after the parent object was closed.
struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) {}
  ~Fd();
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};
using FdRef = std::shared_ptr<Fd>;

// A host mapping that guest memory lives in. Memslots, the JS object and its ArrayBuffer each hold
// a reference, so KVM never sees the range unmapped while a memslot still points at it.
struct Mapping {
  void* addr = nullptr;
  size_t bytes = 0;
  int fd = -1;  // memfd for frame pools, -1 for anonymous shared memory
  ~Mapping();
};
using MappingRef = std::shared_ptr<Mapping>;

struct AddonData {
  Napi::FunctionReference errorClass;  // KvmError from src/hw/kvm.ts, once registered
  Napi::FunctionReference vmCtor, vcpuCtor, memoryCtor;
};

AddonData& Data(Napi::Env env);

// Builds (does not throw) a KvmError for a failed call with the caller's own advice.
Napi::Error SysError(Napi::Env env, const std::string& call, int err, const std::string& advice);
// Builds (does not throw) the KvmError for a failed call; `err` is the errno value.
Napi::Error KvmError(Napi::Env env, const std::string& call, int err, const std::string& extra = "");
// Throws KvmError for the current errno.
[[noreturn]] void ThrowErrno(Napi::Env env, const std::string& call, const std::string& extra = "");
// Errors in the arguments JS passed, before any system call.
[[noreturn]] void ThrowRange(Napi::Env env, const std::string& msg);

std::string ErrnoName(int err);
std::string Advice(const std::string& call, int err);

uint64_t ToU64(Napi::Env env, const Napi::Value& v, const char* what);

void InitVcpu(Napi::Env env, Napi::Object exports);

}  // namespace granule
