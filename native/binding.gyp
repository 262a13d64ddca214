{
  "variables": {
    "common_cflags": ["-std=c++17", "-O3", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wextra"]
  },
  "targets": [
    {
      "target_name": "inflora_native",
      "sources": [
        "src/addon.cc",
        "src/gemm.cc",
        "src/lapack.cc",
        "src/eigh_select.cc",
        "src/elementwise.cc",
        "src/fused.cc",
        "src/kernel_table.cc",
        "src/kernels_impl.cc",
        "src/thread_pool.cc"
      ],
      "defines": ["NAPI_VERSION=8", "INFLORA_KERNEL_VARIANT=baseline"],
      "cflags_cc": ["<@(common_cflags)"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-llapacke", "-lopenblas"],
      "conditions": [
        [
          "target_arch=='x64'",
          {
            "dependencies": ["inflora_kernels_avx2", "inflora_kernels_avx512"],
            "defines": ["INFLORA_HAVE_AVX2_VARIANT", "INFLORA_HAVE_AVX512_VARIANT"]
          }
        ]
      ]
    }
  ],
  "conditions": [
    [
      "target_arch=='x64'",
      {
        "targets": [
          {
            "target_name": "inflora_kernels_avx2",
            "type": "static_library",
            "sources": ["src/kernels_impl.cc"],
            "defines": ["INFLORA_KERNEL_VARIANT=avx2"],
            "cflags": ["-fPIC"],
            "cflags_cc": ["<@(common_cflags)", "-mavx2", "-mfma"]
          },
          {
            "target_name": "inflora_kernels_avx512",
            "type": "static_library",
            "sources": ["src/kernels_impl.cc"],
            "defines": ["INFLORA_KERNEL_VARIANT=avx512"],
            "cflags": ["-fPIC"],
            "cflags_cc": [
              "<@(common_cflags)",
              "-mavx2",
              "-mfma",
              "-mavx512f",
              "-mavx512bw",
              "-mavx512dq",
              "-mavx512vl",
              "-mprefer-vector-width=512"
            ]
          }
        ]
      }
    ]
  ]
}
