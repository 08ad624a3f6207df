// JS errors for failed BPF operations: every error names the operation and carries errno and its
// symbolic code, so the TS side can branch on `code` instead of parsing messages.
#pragma once
#include <napi.h>

#include <string>

namespace sluice {

std::string ErrnoName(int err);

// Builds (does not throw) an Error with properties op, errno, code.
Napi::Error ErrnoError(Napi::Env env, const std::string& op, int err, const std::string& detail = "");

// Throws as a JS exception and returns undefined, for `return ThrowErrno(...)` in handlers.
Napi::Value ThrowErrno(Napi::Env env, const std::string& op, int err, const std::string& detail = "");

// Argument validation errors (TypeError) naming the argument.
Napi::Value ThrowArg(Napi::Env env, const std::string& fn, const std::string& what);

}  // namespace sluice
