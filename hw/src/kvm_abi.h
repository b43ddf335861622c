// <linux/kvm.h> for C++. Older uapi headers declare flexible arrays through __DECLARE_FLEX_ARRAY,
// which in C++ adds an empty struct: sizeof(kvm_cpuid2) becomes 12 instead of 8, so both the
// ioctl numbers (they encode the size) and the entry offsets are wrong and KVM answers EINVAL.
#pragma once
#include <linux/stddef.h>
#undef __DECLARE_FLEX_ARRAY
#define __DECLARE_FLEX_ARRAY(TYPE, NAME) TYPE NAME[0]
#include <linux/kvm.h>

static_assert(sizeof(struct kvm_cpuid2) == 8, "kvm_cpuid2 must match the kernel's layout");
static_assert(sizeof(struct kvm_msrs) == 8, "kvm_msrs must match the kernel's layout");
