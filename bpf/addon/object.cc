// loadObject: open + load a BPF ELF object with libbpf, reusing/pinning LIBBPF_PIN_BY_NAME maps under
// a bpffs root, and describe its programs and maps. options.maxEntries sizes maps by name between open
// and load (bpf_map__set_max_entries): the agent's configured map sizes. options.pinPaths pins maps by
// name elsewhere than under the root (bpf_map__set_pin_path): a map being resized is created beside
// the one in use. On failure the error carries the verifier log and
// libbpf's own messages, which are otherwise printed nowhere.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "addon.h"
#include "args.h"
#include "errors.h"

namespace sluice {

namespace {

std::string* g_libbpf_capture = nullptr;

int LibbpfPrint(enum libbpf_print_level level, const char* fmt, va_list args) {
  char buf[1024];
  int n = vsnprintf(buf, sizeof(buf), fmt, args);
  if (n < 0) return n;
  if (g_libbpf_capture && level != LIBBPF_DEBUG) g_libbpf_capture->append(buf);
  if (getenv("SLUICE_LIBBPF_DEBUG")) fputs(buf, stderr);
  return n;
}

int MkdirP(const std::string& path) {
  std::string cur;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    cur = path.substr(0, pos);
    if (cur.empty()) continue;
    if (mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST) return -errno;
  }
  return 0;
}

struct ObjectHolder {
  bpf_object* obj = nullptr;
};

Napi::Value CloseObject(const Napi::CallbackInfo& info) {
  auto* h = static_cast<ObjectHolder*>(info.Data());
  if (h->obj) {
    bpf_object__close(h->obj);
    h->obj = nullptr;
  }
  return info.Env().Undefined();
}

}  // namespace

void InitLibbpfLogging() { libbpf_set_print(LibbpfPrint); }

Napi::Value LoadObject(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return ThrowArg(env, "loadObject", "path must be a string");
  std::string path = info[0].As<Napi::String>();
  std::string pin_root;
  std::vector<std::pair<std::string, uint32_t>> sizes;
  std::vector<std::pair<std::string, std::string>> pin_paths;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    Napi::Value pr = o.Get("pinRoot");
    if (pr.IsString()) pin_root = pr.As<Napi::String>();
    else if (!pr.IsUndefined()) return ThrowArg(env, "loadObject", "options.pinRoot must be a string");
    Napi::Value me = o.Get("maxEntries");
    if (me.IsObject()) {
      Napi::Object m = me.As<Napi::Object>();
      Napi::Array names = m.GetPropertyNames();
      for (uint32_t k = 0; k < names.Length(); k++) {
        std::string name = names.Get(k).As<Napi::String>();
        int64_t n = 0;
        if (!IntArg(m.Get(name), &n) || n < 1 || n > UINT32_MAX)
          return ThrowArg(env, "loadObject", "options.maxEntries." + name + " must be an integer from 1 to 2^32-1");
        sizes.emplace_back(name, static_cast<uint32_t>(n));
      }
    } else if (!me.IsUndefined()) {
      return ThrowArg(env, "loadObject", "options.maxEntries must be an object");
    }
    Napi::Value pp = o.Get("pinPaths");
    if (pp.IsObject()) {
      Napi::Object m = pp.As<Napi::Object>();
      Napi::Array names = m.GetPropertyNames();
      for (uint32_t k = 0; k < names.Length(); k++) {
        std::string name = names.Get(k).As<Napi::String>();
        Napi::Value v = m.Get(name);
        if (!v.IsString()) return ThrowArg(env, "loadObject", "options.pinPaths." + name + " must be a string");
        pin_paths.emplace_back(name, v.As<Napi::String>());
      }
    } else if (!pp.IsUndefined()) {
      return ThrowArg(env, "loadObject", "options.pinPaths must be an object");
    }
  }
  if (!pin_root.empty()) {
    int err = MkdirP(pin_root);
    if (err) return ThrowErrno(env, "mkdir", err, pin_root);
  }

  const size_t log_size = 4 << 20;
  std::unique_ptr<char[]> log(new char[log_size]);
  log[0] = '\0';
  std::string libbpf_log;
  g_libbpf_capture = &libbpf_log;

  LIBBPF_OPTS(bpf_object_open_opts, opts);
  opts.pin_root_path = pin_root.empty() ? nullptr : pin_root.c_str();
  opts.kernel_log_buf = log.get();
  opts.kernel_log_size = log_size;
  // 0: no log on success; libbpf retries a failed program at level 1 into our buffer.
  opts.kernel_log_level = 0;

  bpf_object* obj = bpf_object__open_file(path.c_str(), &opts);
  int err = obj ? 0 : -errno;
  std::string op = "bpf_object__open_file";
  std::string detail = path;
  for (const auto& [name, n] : sizes) {
    if (!obj) break;
    bpf_map* m = bpf_object__find_map_by_name(obj, name.c_str());
    err = m ? bpf_map__set_max_entries(m, n) : -ENOENT;
    if (err) {
      op = "bpf_map__set_max_entries";
      detail = path + ": map " + name;
      break;
    }
  }
  for (const auto& [name, where] : pin_paths) {
    if (!obj || err) break;
    bpf_map* m = bpf_object__find_map_by_name(obj, name.c_str());
    err = m ? bpf_map__set_pin_path(m, where.c_str()) : -ENOENT;
    if (err) {
      op = "bpf_map__set_pin_path";
      detail = path + ": map " + name;
    }
  }
  if (obj && !err) {
    err = bpf_object__load(obj);
    op = "bpf_object__load";
  }
  g_libbpf_capture = nullptr;
  if (err) {
    if (obj) bpf_object__close(obj);
    Napi::Error e = ErrnoError(env, op, err, detail);
    e.Set("verifierLog", Napi::String::New(env, log.get()));
    e.Set("libbpfLog", Napi::String::New(env, libbpf_log));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }

  Napi::Object result = Napi::Object::New(env);
  Napi::Array progs = Napi::Array::New(env);
  uint32_t i = 0;
  bpf_program* prog;
  bpf_object__for_each_program(prog, obj) {
    Napi::Object p = Napi::Object::New(env);
    p.Set("name", bpf_program__name(prog));
    p.Set("section", bpf_program__section_name(prog));
    p.Set("fd", bpf_program__fd(prog));
    p.Set("type", static_cast<double>(bpf_program__type(prog)));
    progs.Set(i++, p);
  }
  Napi::Array maps = Napi::Array::New(env);
  i = 0;
  bpf_map* map;
  bpf_object__for_each_map(map, obj) {
    Napi::Object m = Napi::Object::New(env);
    m.Set("name", bpf_map__name(map));
    m.Set("fd", bpf_map__fd(map));
    m.Set("type", static_cast<double>(bpf_map__type(map)));
    m.Set("keySize", bpf_map__key_size(map));
    m.Set("valueSize", bpf_map__value_size(map));
    m.Set("maxEntries", bpf_map__max_entries(map));
    m.Set("flags", static_cast<double>(bpf_map__map_flags(map)));
    const char* pp = bpf_map__pin_path(map);
    m.Set("pinPath", pp ? Napi::Value(Napi::String::New(env, pp)) : env.Null());
    m.Set("pinned", bpf_map__is_pinned(map));
    maps.Set(i++, m);
  }
  // Never closed by GC: the fds handed to JS stay valid until close() is called. The holder itself
  // is leaked (a few bytes per load) because close() may outlive the result object.
  auto* holder = new ObjectHolder{obj};
  result.Set("programs", progs);
  result.Set("maps", maps);
  result.Set("close", Napi::Function::New(env, CloseObject, "close", holder));
  return result;
}

}  // namespace sluice
