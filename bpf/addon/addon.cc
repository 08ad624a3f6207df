// Module registration of sluice_bpf.node. The typed facade is operator/src/datapath/kernel/bpf-addon.ts.
#include "addon.h"

namespace sluice {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitLibbpfLogging();
  struct Entry {
    const char* name;
    Napi::Value (*fn)(const Napi::CallbackInfo&);
  };
  const Entry entries[] = {
      {"loadObject", LoadObject},
      {"mapInfo", MapInfo},
      {"mapLookup", MapLookup},
      {"mapUpdate", MapUpdate},
      {"mapDelete", MapDelete},
      {"mapLookupAndDelete", MapLookupAndDelete},
      {"mapGetNextKey", MapGetNextKey},
      {"mapUpdateBatch", MapUpdateBatch},
      {"mapDeleteBatch", MapDeleteBatch},
      {"mapLookupBatch", MapLookupBatch},
      {"mapKeys", MapKeys},
      {"mapDump", MapDump},
      {"objGet", ObjGet},
      {"objPin", ObjPin},
      {"closeFd", CloseFd},
      {"progInfo", ProgInfo},
      {"ifNameToIndex", IfNameToIndex},
      {"numPossibleCpus", NumPossibleCpus},
      {"waitForPrograms", WaitForPrograms},
      {"attachTcx", AttachTcx},
      {"linkUpdate", LinkUpdate},
      {"linkDetach", LinkDetach},
      {"linkInfo", LinkInfo},
      {"tcAttach", TcAttach},
      {"tcQuery", TcQuery},
      {"tcDetach", TcDetach},
      {"tcHookDestroy", TcHookDestroy},
      {"progTestRun", ProgTestRun},
  };
  for (const Entry& e : entries) exports.Set(e.name, Napi::Function::New(env, e.fn, e.name));
  return InitRingBuffer(env, exports);
}

}  // namespace sluice

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return sluice::Init(env, exports); }

NODE_API_MODULE(sluice_bpf, InitModule)
