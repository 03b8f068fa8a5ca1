// dlpack_abi.h — the DLPack exchange structures, written out for spmla's Python extension.
//
// DLPack is a plain C ABI (struct layouts and integer codes), so the extension declares the
// few structures it reads itself instead of vendoring a header. Layouts follow DLPack 1.1:
// the unversioned DLManagedTensor ("dltensor" capsules) and DLManagedTensorVersioned
// ("dltensor_versioned" capsules, protocol version 1.x).
#pragma once
#include <cstdint>

namespace spmla_py {
namespace dlpack {

// Device types (DLDeviceType).
enum DeviceType : int32_t {
  kCPU = 1,
  kCUDA = 2,
  kCUDAHost = 3,
  kOpenCL = 4,
  kVulkan = 7,
  kMetal = 8,
  kVPI = 9,
  kROCM = 10,
  kROCMHost = 11,
  kExtDev = 12,
  kCUDAManaged = 13,
  kOneAPI = 14,
  kWebGPU = 15,
  kHexagon = 16,
  kMAIA = 17,
};

// Element type codes (DLDataTypeCode).
enum TypeCode : uint8_t {
  kInt = 0,
  kUInt = 1,
  kFloat = 2,
  kOpaqueHandle = 3,
  kBfloat = 4,
  kComplex = 5,
  kBool = 6,
  kFloat8_e3m4 = 7,
  kFloat8_e4m3 = 8,
  kFloat8_e4m3b11fnuz = 9,
  kFloat8_e4m3fn = 10,
  kFloat8_e4m3fnuz = 11,
  kFloat8_e5m2 = 12,
  kFloat8_e5m2fnuz = 13,
  kFloat8_e8m0fnu = 14,
  kFloat6_e2m3fn = 15,
  kFloat6_e3m2fn = 16,
  kFloat4_e2m1fn = 17,
};

struct Device {
  int32_t device_type;
  int32_t device_id;
};

struct DataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};

struct Tensor {
  void *data;
  Device device;
  int32_t ndim;
  DataType dtype;
  int64_t *shape;
  int64_t *strides;  // in elements; NULL = compact row-major
  uint64_t byte_offset;
};

struct ManagedTensor {
  Tensor dl_tensor;
  void *manager_ctx;
  void (*deleter)(ManagedTensor *self);
};

struct PackVersion {
  uint32_t major;
  uint32_t minor;
};

// Bits of ManagedTensorVersioned::flags.
constexpr uint64_t kFlagReadOnly = 1ull << 0;
constexpr uint64_t kFlagIsCopied = 1ull << 1;
constexpr uint64_t kFlagSubbyteTypePadded = 1ull << 2;

struct ManagedTensorVersioned {
  PackVersion version;
  void *manager_ctx;
  void (*deleter)(ManagedTensorVersioned *self);
  uint64_t flags;
  Tensor dl_tensor;
};

// Capsule names of the Python exchange protocol.
constexpr const char *kCapsuleName = "dltensor";
constexpr const char *kCapsuleNameVersioned = "dltensor_versioned";
// The protocol version this consumer understands (asked for through max_version).
constexpr uint32_t kMaxMajor = 1;
constexpr uint32_t kMaxMinor = 1;

}  // namespace dlpack
}  // namespace spmla_py
