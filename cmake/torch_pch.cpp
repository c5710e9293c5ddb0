// Compiles cmake/torch_pch.h once so other targets can reuse the precompiled header.
