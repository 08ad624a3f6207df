// Attachment: tcx links (kernel >= 6.6) and the legacy tc clsact path.
// libbpf 1.1 has no tcx helper and the 6.1 uapi headers lack BPF_TCX_*, but bpf_link_create passes
// unknown attach types straight to the kernel, which is all tcx needs.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <string.h>

#include "addon.h"
#include "args.h"
#include "errors.h"

namespace sluice {

namespace {

constexpr int kTcxIngress = 46;  // BPF_TCX_INGRESS
constexpr int kTcxEgress = 47;   // BPF_TCX_EGRESS

// 0 ingress, 1 egress, -1 invalid
int DirArg(const Napi::Value& v) {
  if (!v.IsString()) return -1;
  std::string s = v.As<Napi::String>();
  if (s == "ingress") return 0;
  if (s == "egress") return 1;
  return -1;
}

// bpf_link_info as the kernel fills it; the union (tcx: ifindex, attach_type) starts at offset 16.
// Declared here because the installed uapi header predates tcx.
struct RawLinkInfo {
  uint32_t type;
  uint32_t id;
  uint32_t prog_id;
  uint32_t pad;
  uint32_t u[12];
};

}  // namespace

// attachTcx(progFd, ifindex, "ingress"|"egress") -> linkFd
Napi::Value AttachTcx(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t prog, ifindex;
  int dir = info.Length() > 2 ? DirArg(info[2]) : -1;
  if (info.Length() < 3 || !IntArg(info[0], &prog) || !IntArg(info[1], &ifindex) || dir < 0)
    return ThrowArg(env, "attachTcx", "expects (progFd, ifindex, 'ingress' | 'egress')");
  LIBBPF_OPTS(bpf_link_create_opts, opts);
  int fd = bpf_link_create(static_cast<int>(prog), static_cast<int>(ifindex),
                           static_cast<enum bpf_attach_type>(dir == 0 ? kTcxIngress : kTcxEgress), &opts);
  if (fd < 0) return ThrowErrno(env, "bpf_link_create", errno);
  return Napi::Number::New(env, fd);
}

// linkUpdate(linkFd, newProgFd, oldProgFd?) — atomic program replacement; with oldProgFd the kernel
// refuses (EPERM) when the link no longer runs that program.
Napi::Value LinkUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t link, prog, old = -1;
  if (info.Length() < 2 || !IntArg(info[0], &link) || !IntArg(info[1], &prog))
    return ThrowArg(env, "linkUpdate", "expects (linkFd, newProgFd, oldProgFd?)");
  if (info.Length() > 2 && !info[2].IsUndefined() && !IntArg(info[2], &old))
    return ThrowArg(env, "linkUpdate", "oldProgFd must be an integer");
  LIBBPF_OPTS(bpf_link_update_opts, opts);
  if (old >= 0) {
    opts.flags = BPF_F_REPLACE;
    opts.old_prog_fd = static_cast<uint32_t>(old);
  }
  if (bpf_link_update(static_cast<int>(link), static_cast<int>(prog), &opts) != 0)
    return ThrowErrno(env, "bpf_link_update", errno);
  return env.Undefined();
}

// linkDetach(linkFd) — for removing an endpoint, never for upgrades.
Napi::Value LinkDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t link;
  if (info.Length() < 1 || !IntArg(info[0], &link)) return ThrowArg(env, "linkDetach", "expects (linkFd)");
  if (bpf_link_detach(static_cast<int>(link)) != 0) return ThrowErrno(env, "bpf_link_detach", errno);
  return env.Undefined();
}

// linkInfo(linkFd) -> { id, type, progId, ifindex, attachType } (ifindex 0 once the device is gone)
Napi::Value LinkInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t link;
  if (info.Length() < 1 || !IntArg(info[0], &link)) return ThrowArg(env, "linkInfo", "expects (linkFd)");
  RawLinkInfo li;
  memset(&li, 0, sizeof(li));
  uint32_t len = sizeof(li);
  if (bpf_obj_get_info_by_fd(static_cast<int>(link), &li, &len) != 0)
    return ThrowErrno(env, "bpf_obj_get_info_by_fd", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", li.id);
  o.Set("type", li.type);
  o.Set("progId", li.prog_id);
  o.Set("ifindex", li.u[0]);
  o.Set("attachType", li.u[1]);
  return o;
}

namespace {

void FillHook(bpf_tc_hook* hook, int ifindex, int dir) {
  memset(hook, 0, sizeof(*hook));
  hook->sz = sizeof(*hook);
  hook->ifindex = ifindex;
  hook->attach_point = dir == 0 ? BPF_TC_INGRESS : BPF_TC_EGRESS;
}

bool TcArgs(const Napi::CallbackInfo& info, size_t first, int64_t* ifindex, int* dir) {
  if (info.Length() < first + 2 || !IntArg(info[first], ifindex)) return false;
  *dir = DirArg(info[first + 1]);
  return *dir >= 0;
}

}  // namespace

// tcAttach(progFd, ifindex, dir, { handle = 1, priority = 1, replace = false }) -> { handle, priority, progId }
// Creates the clsact qdisc when missing (EEXIST is fine). With replace the filter's program is swapped in
// place, which is the legacy path's atomic upgrade.
Napi::Value TcAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t prog, ifindex;
  int dir;
  if (info.Length() < 3 || !IntArg(info[0], &prog) || !TcArgs(info, 1, &ifindex, &dir))
    return ThrowArg(env, "tcAttach", "expects (progFd, ifindex, 'ingress' | 'egress', options?)");
  int64_t handle = 1, priority = 1;
  bool replace = false;
  if (info.Length() > 3 && info[3].IsObject()) {
    Napi::Object o = info[3].As<Napi::Object>();
    IntArg(o.Get("handle"), &handle);
    IntArg(o.Get("priority"), &priority);
    replace = o.Get("replace").ToBoolean();
  }
  bpf_tc_hook hook;
  FillHook(&hook, static_cast<int>(ifindex), dir);
  int err = bpf_tc_hook_create(&hook);
  if (err && err != -EEXIST) return ThrowErrno(env, "bpf_tc_hook_create", -err);
  LIBBPF_OPTS(bpf_tc_opts, opts);
  opts.prog_fd = static_cast<int>(prog);
  opts.handle = static_cast<uint32_t>(handle);
  opts.priority = static_cast<uint32_t>(priority);
  opts.flags = replace ? BPF_TC_F_REPLACE : 0;
  err = bpf_tc_attach(&hook, &opts);
  if (err) return ThrowErrno(env, "bpf_tc_attach", -err);
  Napi::Object o = Napi::Object::New(env);
  o.Set("handle", opts.handle);
  o.Set("priority", opts.priority);
  o.Set("progId", opts.prog_id);
  return o;
}

// tcQuery(ifindex, dir, handle, priority) -> { progId } | null
Napi::Value TcQuery(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t ifindex, handle, priority;
  int dir;
  if (!TcArgs(info, 0, &ifindex, &dir) || info.Length() < 4 || !IntArg(info[2], &handle) ||
      !IntArg(info[3], &priority))
    return ThrowArg(env, "tcQuery", "expects (ifindex, dir, handle, priority)");
  bpf_tc_hook hook;
  FillHook(&hook, static_cast<int>(ifindex), dir);
  LIBBPF_OPTS(bpf_tc_opts, opts);
  opts.handle = static_cast<uint32_t>(handle);
  opts.priority = static_cast<uint32_t>(priority);
  int err = bpf_tc_query(&hook, &opts);
  if (err == -ENOENT || err == -EINVAL) return env.Null();
  if (err) return ThrowErrno(env, "bpf_tc_query", -err);
  Napi::Object o = Napi::Object::New(env);
  o.Set("progId", opts.prog_id);
  return o;
}

// tcDetach(ifindex, dir, handle, priority)
Napi::Value TcDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t ifindex, handle, priority;
  int dir;
  if (!TcArgs(info, 0, &ifindex, &dir) || info.Length() < 4 || !IntArg(info[2], &handle) ||
      !IntArg(info[3], &priority))
    return ThrowArg(env, "tcDetach", "expects (ifindex, dir, handle, priority)");
  bpf_tc_hook hook;
  FillHook(&hook, static_cast<int>(ifindex), dir);
  LIBBPF_OPTS(bpf_tc_opts, opts);
  opts.handle = static_cast<uint32_t>(handle);
  opts.priority = static_cast<uint32_t>(priority);
  int err = bpf_tc_detach(&hook, &opts);
  if (err) return ThrowErrno(env, "bpf_tc_detach", -err);
  return env.Undefined();
}

// tcHookDestroy(ifindex) — removes the clsact qdisc (both directions) and every filter on it.
Napi::Value TcHookDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t ifindex;
  if (info.Length() < 1 || !IntArg(info[0], &ifindex)) return ThrowArg(env, "tcHookDestroy", "expects (ifindex)");
  bpf_tc_hook hook;
  FillHook(&hook, static_cast<int>(ifindex), 0);
  hook.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
  int err = bpf_tc_hook_destroy(&hook);
  if (err && err != -ENOENT) return ThrowErrno(env, "bpf_tc_hook_destroy", -err);
  return env.Undefined();
}

}  // namespace sluice
