// bpffs pins, raw fds and interface names.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <string.h>
#include <unistd.h>

#include "addon.h"
#include "args.h"
#include "errors.h"

namespace sluice {

// objGet(path) -> fd of the pinned map, program or link
Napi::Value ObjGet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return ThrowArg(env, "objGet", "path must be a string");
  std::string path = info[0].As<Napi::String>();
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) return ThrowErrno(env, "bpf_obj_get", errno, path);
  return Napi::Number::New(env, fd);
}

// objPin(fd, path)
Napi::Value ObjPin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (info.Length() < 2 || !IntArg(info[0], &fd) || !info[1].IsString())
    return ThrowArg(env, "objPin", "expects (fd, path)");
  std::string path = info[1].As<Napi::String>();
  if (bpf_obj_pin(static_cast<int>(fd), path.c_str()) != 0) return ThrowErrno(env, "bpf_obj_pin", errno, path);
  return env.Undefined();
}

// closeFd(fd)
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (info.Length() < 1 || !IntArg(info[0], &fd) || fd < 0) return ThrowArg(env, "closeFd", "fd must be an integer");
  if (close(static_cast<int>(fd)) != 0) return ThrowErrno(env, "close", errno);
  return env.Undefined();
}

// progInfo(fd) -> { id, type, name, tag }
Napi::Value ProgInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (info.Length() < 1 || !IntArg(info[0], &fd)) return ThrowArg(env, "progInfo", "fd must be an integer");
  bpf_prog_info pi;
  memset(&pi, 0, sizeof(pi));
  uint32_t len = sizeof(pi);
  if (bpf_obj_get_info_by_fd(static_cast<int>(fd), &pi, &len) != 0)
    return ThrowErrno(env, "bpf_obj_get_info_by_fd", errno);
  char tag[2 * BPF_TAG_SIZE + 1];
  for (int i = 0; i < BPF_TAG_SIZE; i++) snprintf(tag + 2 * i, 3, "%02x", pi.tag[i]);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", pi.id);
  o.Set("type", pi.type);
  o.Set("name", pi.name);
  o.Set("tag", tag);
  return o;
}

// ifNameToIndex(name) -> ifindex
Napi::Value IfNameToIndex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return ThrowArg(env, "ifNameToIndex", "name must be a string");
  std::string name = info[0].As<Napi::String>();
  unsigned idx = if_nametoindex(name.c_str());
  if (idx == 0) return ThrowErrno(env, "if_nametoindex", errno, name);
  return Napi::Number::New(env, idx);
}

Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) return ThrowErrno(info.Env(), "libbpf_num_possible_cpus", -n);
  return Napi::Number::New(info.Env(), n);
}

}  // namespace sluice

namespace sluice {

// waitForPrograms() — returns once every BPF program that might have read a map value before the call
// has finished. The kernel waits for an RCU grace period after each update of a map-in-map (so user
// space knows no program still uses the old inner map); a private one-slot ARRAY_OF_MAPS gives us that
// wait on demand. The map writer uses it between an endpoint's generation flip and rewriting the old
// generation, so a packet that read the old generation never sees it change under it.
Napi::Value WaitForPrograms(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  static int inner_fd = -1, outer_fd = -1;
  if (outer_fd < 0) {
    int in = bpf_map_create(BPF_MAP_TYPE_ARRAY, "sl_rcu_inner", 4, 4, 1, nullptr);
    if (in < 0) return ThrowErrno(env, "bpf_map_create", errno);
    LIBBPF_OPTS(bpf_map_create_opts, o, .inner_map_fd = static_cast<__u32>(in));
    int out = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "sl_rcu_outer", 4, 4, 1, &o);
    if (out < 0) {
      int err = errno;
      close(in);
      return ThrowErrno(env, "bpf_map_create", err);
    }
    inner_fd = in;
    outer_fd = out;
    uint32_t k = 0, v = static_cast<uint32_t>(inner_fd);
    if (bpf_map_update_elem(outer_fd, &k, &v, BPF_ANY) != 0) return ThrowErrno(env, "bpf_map_update_elem", errno);
  }
  uint32_t k = 0, v = static_cast<uint32_t>(inner_fd);
  // Replacing the slot's (same) inner map still goes through the grace-period wait.
  if (bpf_map_update_elem(outer_fd, &k, &v, BPF_ANY) != 0) return ThrowErrno(env, "bpf_map_update_elem", errno);
  return env.Undefined();
}

}  // namespace sluice
