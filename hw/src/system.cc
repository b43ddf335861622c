#include "system.h"

#include <cerrno>
#include <fcntl.h>
#include "kvm_abi.h"
#include <sys/ioctl.h>

#include "vm.h"

namespace granule {

Napi::Function KvmSystem::Define(Napi::Env env) {
  return DefineClass(env, "KvmSystem",
                     {InstanceAccessor<&KvmSystem::ApiVersion>("apiVersion"),
                      InstanceMethod<&KvmSystem::CheckExtension>("checkExtension"),
                      InstanceMethod<&KvmSystem::CreateVm>("createVm"),
                      InstanceMethod<&KvmSystem::Close>("close")});
}

// new KvmSystem(path)
KvmSystem::KvmSystem(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KvmSystem>(info) {
  Napi::Env env = info.Env();
  std::string path = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "/dev/kvm";
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) ThrowErrno(env, "open " + path);
  sys_ = std::make_shared<Fd>(fd);
  apiVersion_ = ioctl(fd, KVM_GET_API_VERSION, 0);
  if (apiVersion_ < 0) ThrowErrno(env, "KVM_GET_API_VERSION");
  if (apiVersion_ != KVM_API_VERSION)
    throw Napi::Error::New(env, "KVM API version " + std::to_string(apiVersion_) + " at " + path +
                                    ", expected " + std::to_string(KVM_API_VERSION) +
                                    "; this kernel's KVM is not supported");
}

FdRef KvmSystem::Sys(Napi::Env env) const {
  if (!sys_) throw Napi::Error::New(env, "the KVM system was closed; open it again");
  return sys_;
}

Napi::Value KvmSystem::ApiVersion(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), apiVersion_);
}

Napi::Value KvmSystem::CheckExtension(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int r = ioctl(Sys(env)->fd, KVM_CHECK_EXTENSION, info[0].As<Napi::Number>().Int32Value());
  if (r < 0) ThrowErrno(env, "KVM_CHECK_EXTENSION");
  return Napi::Number::New(env, r);
}

Napi::Value KvmSystem::CreateVm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FdRef sys = Sys(env);
  int fd = ioctl(sys->fd, KVM_CREATE_VM, 0);
  if (fd < 0) ThrowErrno(env, "KVM_CREATE_VM");
  VmInit init{sys, std::make_shared<Fd>(fd)};
  return Data(env).vmCtor.New({Napi::External<VmInit>::New(env, &init)});
}

Napi::Value KvmSystem::Close(const Napi::CallbackInfo& info) {
  sys_.reset();
  return info.Env().Undefined();
}

}  // namespace granule
