# Two native targets, built by scripts/build-native.mjs (npm install) or `node-gyp configure build`.
# Do not use `node-gyp rebuild`/`clean`: they delete the whole build/ directory, which also holds
# the simulator's wasm and the guest image.
{
  "variables": {
    # granule_baselines is written separately; build it once its source exists.
    "have_baselines%": "<!(node -p \"require('fs').existsSync('hw/baselines/baselines.c') ? 1 : 0\")"
  },
  "target_defaults": {
    "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
    "conditions": [["OS!='linux'", {"type": "none"}]]
  },
  "targets": [
    {
      "target_name": "granule_kvm",
      "sources": [
        "hw/src/addon.cc",
        "hw/src/errors.cc",
        "hw/src/memory.cc",
        "hw/src/regs.cc",
        "hw/src/system.cc",
        "hw/src/vcpu.cc",
        "hw/src/vm.cc",
        "hw/src/wpwatch.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++14", "-std=gnu++17"],
      "cflags_cc": ["-std=gnu++17", "-fexceptions"]
    }
  ],
  "conditions": [
    ["have_baselines==1", {
      "targets": [
        {
          "target_name": "granule_baselines",
          "sources": ["hw/baselines/baselines.c"],
          "include_dirs": ["hw/include"],
          "cflags_c": ["-std=gnu11"],
          "libraries": ["-lpthread"]
        }
      ]
    }]
  ]
}
