#include "regs.h"

namespace granule {

#define GRANULE_REGS(X)                                                                        \
  X(rax) X(rbx) X(rcx) X(rdx) X(rsi) X(rdi) X(rsp) X(rbp) X(r8) X(r9) X(r10) X(r11) X(r12) \
  X(r13) X(r14) X(r15) X(rip) X(rflags)

#define GRANULE_SEGS(X) X(cs) X(ds) X(es) X(fs) X(gs) X(ss) X(tr) X(ldt)
#define GRANULE_CRS(X) X(cr0) X(cr2) X(cr3) X(cr4) X(cr8) X(efer) X(apic_base)

Napi::Object RegsToJs(Napi::Env env, const kvm_regs& r) {
  Napi::Object o = Napi::Object::New(env);
#define X(f) o.Set(#f, Napi::BigInt::New(env, static_cast<uint64_t>(r.f)));
  GRANULE_REGS(X)
#undef X
  return o;
}

void RegsFromJs(Napi::Env env, Napi::Object o, kvm_regs& r) {
#define X(f) \
  if (o.Has(#f) && !o.Get(#f).IsUndefined()) r.f = ToU64(env, o.Get(#f), "regs." #f);
  GRANULE_REGS(X)
#undef X
}

static uint32_t U32(Napi::Env env, Napi::Value v, const std::string& what) {
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? 1 : 0;
  uint64_t x = ToU64(env, v, what.c_str());
  if (x > 0xffffffffull) ThrowRange(env, what + " does not fit in 32 bits");
  return static_cast<uint32_t>(x);
}

static void SegFromJs(Napi::Env env, Napi::Value v, kvm_segment& s, const char* name) {
  if (v.IsUndefined()) return;
  if (!v.IsObject()) throw Napi::TypeError::New(env, std::string("sregs.") + name + " must be an object");
  Napi::Object o = v.As<Napi::Object>();
  std::string p = std::string("sregs.") + name + ".";
  if (o.Has("base")) s.base = ToU64(env, o.Get("base"), (p + "base").c_str());
#define F(f) \
  if (o.Has(#f)) s.f = static_cast<decltype(s.f)>(U32(env, o.Get(#f), p + #f));
  F(limit) F(selector) F(type) F(present) F(dpl) F(db) F(s) F(l) F(g) F(avl) F(unusable)
#undef F
}

static void DtFromJs(Napi::Env env, Napi::Value v, kvm_dtable& d, const char* name) {
  if (v.IsUndefined()) return;
  Napi::Object o = v.As<Napi::Object>();
  std::string p = std::string("sregs.") + name + ".";
  if (o.Has("base")) d.base = ToU64(env, o.Get("base"), (p + "base").c_str());
  if (o.Has("limit")) d.limit = static_cast<uint16_t>(U32(env, o.Get("limit"), p + "limit"));
}

void SregsFromJs(Napi::Env env, Napi::Object o, kvm_sregs& s) {
#define X(f) SegFromJs(env, o.Get(#f), s.f, #f);
  GRANULE_SEGS(X)
#undef X
  DtFromJs(env, o.Get("gdt"), s.gdt, "gdt");
  DtFromJs(env, o.Get("idt"), s.idt, "idt");
#define X(f) \
  if (o.Has(#f) && !o.Get(#f).IsUndefined()) s.f = ToU64(env, o.Get(#f), "sregs." #f);
  GRANULE_CRS(X)
#undef X
}

}  // namespace granule
