#include "errors.h"

#include <string.h>

namespace sluice {

std::string ErrnoName(int err) {
  // Kernel-internal codes that leak to user space through the bpf syscall; glibc has no names for them.
  switch (err) {
    case 524:
      return "ENOTSUPP";
    case 512:
      return "ERESTARTSYS";
    default:
      break;
  }
  const char* name = strerrorname_np(err);
  return name ? std::string(name) : "E" + std::to_string(err);
}

Napi::Error ErrnoError(Napi::Env env, const std::string& op, int err, const std::string& detail) {
  if (err < 0) err = -err;
  std::string code = ErrnoName(err);
  const char* desc = err == 524 ? "operation not supported" : strerror(err);
  std::string msg = op + " failed: " + desc + " (" + code + ")";
  if (!detail.empty()) msg += ": " + detail;
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("op", Napi::String::New(env, op));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("code", Napi::String::New(env, code));
  return e;
}

Napi::Value ThrowErrno(Napi::Env env, const std::string& op, int err, const std::string& detail) {
  ErrnoError(env, op, err, detail).ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value ThrowArg(Napi::Env env, const std::string& fn, const std::string& what) {
  Napi::TypeError::New(env, fn + ": " + what).ThrowAsJavaScriptException();
  return env.Undefined();
}

}  // namespace sluice
