#pragma once
#include "kvm_abi.h"

#include "common.h"

namespace granule {

// struct kvm_regs <-> plain objects, and kvm_sregs from one. 64-bit fields are bigint (addresses in
// the upper half do not fit a double); narrower fields are numbers. The *FromJs functions overlay
// only the keys present, so callers can pass partial objects over the current state.
Napi::Object RegsToJs(Napi::Env env, const kvm_regs& r);
void RegsFromJs(Napi::Env env, Napi::Object o, kvm_regs& r);
void SregsFromJs(Napi::Env env, Napi::Object o, kvm_sregs& s);

}  // namespace granule
