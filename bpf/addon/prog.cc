// BPF_PROG_RUN: run a program on crafted packet data (and, for tc programs, a __sk_buff context).
#include <bpf/bpf.h>
#include <errno.h>

#include <vector>

#include "addon.h"
#include "args.h"
#include "errors.h"

namespace sluice {

// progTestRun(progFd, { data, ctx?, repeat = 1, dataSizeOut = data.length + 256 })
//   -> { retval, durationNs, dataOut: Buffer, ctxOut: Buffer | null }
Napi::Value ProgTestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (info.Length() < 2 || !IntArg(info[0], &fd) || !info[1].IsObject())
    return ThrowArg(env, "progTestRun", "expects (progFd, { data, ctx?, repeat?, dataSizeOut? })");
  Napi::Object o = info[1].As<Napi::Object>();
  Bytes data = BytesArg(o.Get("data"));
  if (!data.ok) return ThrowArg(env, "progTestRun", "options.data must be a Uint8Array");
  Bytes ctx = BytesArg(o.Get("ctx"));
  int64_t repeat = 1, out_size = static_cast<int64_t>(data.size) + 256;
  if (!o.Get("repeat").IsUndefined() && (!IntArg(o.Get("repeat"), &repeat) || repeat < 0 || repeat > INT32_MAX))
    return ThrowArg(env, "progTestRun", "options.repeat must be a non-negative integer");
  if (!o.Get("dataSizeOut").IsUndefined() &&
      (!IntArg(o.Get("dataSizeOut"), &out_size) || out_size < 0 || out_size > (64 << 20)))
    return ThrowArg(env, "progTestRun", "options.dataSizeOut must be a non-negative integer");

  std::vector<uint8_t> out(static_cast<size_t>(out_size));
  std::vector<uint8_t> ctx_out(ctx.ok ? ctx.size : 0);
  LIBBPF_OPTS(bpf_test_run_opts, opts);
  opts.data_in = data.data;
  opts.data_size_in = static_cast<uint32_t>(data.size);
  opts.data_out = out.empty() ? nullptr : out.data();
  opts.data_size_out = static_cast<uint32_t>(out.size());
  if (ctx.ok) {
    opts.ctx_in = ctx.data;
    opts.ctx_size_in = static_cast<uint32_t>(ctx.size);
    opts.ctx_out = ctx_out.data();
    opts.ctx_size_out = static_cast<uint32_t>(ctx_out.size());
  }
  opts.repeat = static_cast<int>(repeat);
  if (bpf_prog_test_run_opts(static_cast<int>(fd), &opts) != 0) return ThrowErrno(env, "bpf_prog_test_run_opts", errno);
  Napi::Object r = Napi::Object::New(env);
  r.Set("retval", opts.retval);
  r.Set("durationNs", opts.duration);
  r.Set("dataOut", Napi::Buffer<uint8_t>::Copy(env, out.data(), std::min<size_t>(opts.data_size_out, out.size())));
  r.Set("ctxOut", ctx.ok ? Napi::Value(Napi::Buffer<uint8_t>::Copy(env, ctx_out.data(),
                                                                   std::min<size_t>(opts.ctx_size_out, ctx_out.size())))
                         : env.Null());
  return r;
}

}  // namespace sluice
