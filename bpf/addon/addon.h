// Entry points of the addon, one group per file. No policy logic lives here: only thin wrappers
// over libbpf/bpf syscalls with byte buffers in and out.
#pragma once
#include <napi.h>

namespace sluice {

void InitLibbpfLogging();

// object.cc
Napi::Value LoadObject(const Napi::CallbackInfo& info);

// maps.cc
Napi::Value MapInfo(const Napi::CallbackInfo& info);
Napi::Value MapLookup(const Napi::CallbackInfo& info);
Napi::Value MapUpdate(const Napi::CallbackInfo& info);
Napi::Value MapDelete(const Napi::CallbackInfo& info);
Napi::Value MapLookupAndDelete(const Napi::CallbackInfo& info);
Napi::Value MapGetNextKey(const Napi::CallbackInfo& info);
Napi::Value MapUpdateBatch(const Napi::CallbackInfo& info);
Napi::Value MapDeleteBatch(const Napi::CallbackInfo& info);
Napi::Value MapLookupBatch(const Napi::CallbackInfo& info);
Napi::Value MapKeys(const Napi::CallbackInfo& info);
Napi::Value MapDump(const Napi::CallbackInfo& info);

// objects.cc (bpffs, fds, interfaces)
Napi::Value ObjGet(const Napi::CallbackInfo& info);
Napi::Value ObjPin(const Napi::CallbackInfo& info);
Napi::Value CloseFd(const Napi::CallbackInfo& info);
Napi::Value ProgInfo(const Napi::CallbackInfo& info);
Napi::Value IfNameToIndex(const Napi::CallbackInfo& info);
Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info);
Napi::Value WaitForPrograms(const Napi::CallbackInfo& info);

// links.cc
Napi::Value AttachTcx(const Napi::CallbackInfo& info);
Napi::Value LinkUpdate(const Napi::CallbackInfo& info);
Napi::Value LinkDetach(const Napi::CallbackInfo& info);
Napi::Value LinkInfo(const Napi::CallbackInfo& info);
Napi::Value TcAttach(const Napi::CallbackInfo& info);
Napi::Value TcQuery(const Napi::CallbackInfo& info);
Napi::Value TcDetach(const Napi::CallbackInfo& info);
Napi::Value TcHookDestroy(const Napi::CallbackInfo& info);

// prog.cc
Napi::Value ProgTestRun(const Napi::CallbackInfo& info);

// ringbuf.cc
Napi::Object InitRingBuffer(Napi::Env env, Napi::Object exports);

}  // namespace sluice
