// wavefront_size.h — force-included (-include) into every HIP translation unit of the plugin.
//
// clang-22 no longer predefines __AMDGCN_WAVEFRONT_SIZE, but Debian's HIP 5.2 headers need it
// (warpSize) and so does our compat header. One clang invocation compiles every offload target,
// so a single -D cannot serve wave64 (CDNA: gfx90a, gfx942, gfx950) and wave32 (RDNA: gfx1100,
// gfx1201) at once: derive it per target from clang's target macros instead. The host pass gets
// 64 (it never runs device code). A -D__AMDGCN_WAVEFRONT_SIZE=... on the command line wins.
#pragma once
#ifndef __AMDGCN_WAVEFRONT_SIZE
#  if defined(__GFX10__) || defined(__GFX11__) || defined(__GFX12__)
#    define __AMDGCN_WAVEFRONT_SIZE 32
#  else
#    define __AMDGCN_WAVEFRONT_SIZE 64
#  endif
#endif
