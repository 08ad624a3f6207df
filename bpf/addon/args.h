// Argument helpers: byte views of Buffer/Uint8Array and checked integer reads.
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace sluice {

struct Bytes {
  uint8_t* data = nullptr;
  size_t size = 0;
  bool ok = false;
};

// Any TypedArray or Buffer argument as raw bytes (no copy).
inline Bytes BytesArg(const Napi::Value& v) {
  Bytes b;
  if (v.IsTypedArray()) {
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    Napi::ArrayBuffer ab = ta.ArrayBuffer();
    b.data = static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset();
    b.size = ta.ByteLength();
    b.ok = true;
  } else if (v.IsArrayBuffer()) {
    Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
    b.data = static_cast<uint8_t*>(ab.Data());
    b.size = ab.ByteLength();
    b.ok = true;
  }
  return b;
}

inline bool IntArg(const Napi::Value& v, int64_t* out) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d))) return false;
  *out = static_cast<int64_t>(d);
  return true;
}

}  // namespace sluice
