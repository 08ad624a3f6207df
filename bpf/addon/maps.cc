// Map operations on a file descriptor. Keys and values are raw bytes; batch calls take one contiguous
// buffer of keys and one of values so a batch costs one JS->C crossing, not one per element.
// Operations that write into caller memory check the buffer against the map's real sizes first.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <string.h>

#include <algorithm>
#include <string>
#include <vector>

#include "addon.h"
#include "args.h"
#include "errors.h"

namespace sluice {

namespace {

bool IsPerCpu(uint32_t type) {
  return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
         type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

struct Sizes {
  uint32_t type = 0;
  uint32_t key = 0;
  uint32_t value = 0;  // per element as seen by user space (per-CPU: rounded to 8 x possible CPUs)
  uint32_t max_entries = 0;
};

int GetSizes(int fd, Sizes* s) {
  bpf_map_info info;
  memset(&info, 0, sizeof(info));
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return -errno;
  s->type = info.type;
  s->key = info.key_size;
  s->value = info.value_size;
  s->max_entries = info.max_entries;
  if (IsPerCpu(info.type)) {
    int ncpu = libbpf_num_possible_cpus();
    if (ncpu < 0) return ncpu;
    s->value = ((info.value_size + 7) & ~7u) * ncpu;
  }
  return 0;
}

bool FdArg(const Napi::CallbackInfo& info, size_t i, int* fd) {
  int64_t v;
  if (info.Length() <= i || !IntArg(info[i], &v) || v < 0 || v > INT32_MAX) return false;
  *fd = static_cast<int>(v);
  return true;
}

uint64_t OptU64(const Napi::CallbackInfo& info, size_t i) {
  int64_t v = 0;
  if (info.Length() > i && IntArg(info[i], &v) && v >= 0) return static_cast<uint64_t>(v);
  return 0;
}

bool IsEnd(int err) { return err == ENOENT; }

// The kernel only accepts BPF_F_LOCK in elem_flags. Checking it here means an EINVAL from a batch call
// comes from an element, after the kernel has written back how many it processed.
constexpr uint64_t kElemFlagsAllowed = BPF_F_LOCK;
bool IsUnsupported(int err) { return err == EINVAL || err == ENOTSUP || err == 524 || err == EOPNOTSUPP; }

}  // namespace

Napi::Value MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!FdArg(info, 0, &fd)) return ThrowArg(env, "mapInfo", "fd must be a non-negative integer");
  bpf_map_info mi;
  memset(&mi, 0, sizeof(mi));
  uint32_t len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(fd, &mi, &len) != 0) return ThrowErrno(env, "bpf_obj_get_info_by_fd", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", mi.id);
  o.Set("name", mi.name);
  o.Set("type", mi.type);
  o.Set("keySize", mi.key_size);
  o.Set("valueSize", mi.value_size);
  o.Set("maxEntries", mi.max_entries);
  o.Set("flags", mi.map_flags);
  return o;
}

// mapLookup(fd, key, valueOut) -> boolean (false: no such key)
Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!FdArg(info, 0, &fd)) return ThrowArg(env, "mapLookup", "fd must be a non-negative integer");
  Bytes key = BytesArg(info[1]), val = BytesArg(info[2]);
  if (!key.ok || !val.ok) return ThrowArg(env, "mapLookup", "key and valueOut must be Uint8Arrays");
  Sizes s;
  if (int err = GetSizes(fd, &s)) return ThrowErrno(env, "bpf_obj_get_info_by_fd", err);
  if (key.size < s.key || val.size < s.value)
    return ThrowArg(env, "mapLookup", "key needs " + std::to_string(s.key) + " bytes, valueOut " +
                                          std::to_string(s.value));
  if (bpf_map_lookup_elem(fd, key.data, val.data) != 0) {
    if (IsEnd(errno)) return Napi::Boolean::New(env, false);
    return ThrowErrno(env, "bpf_map_lookup_elem", errno);
  }
  return Napi::Boolean::New(env, true);
}

// mapUpdate(fd, key, value, flags = BPF_ANY)
Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!FdArg(info, 0, &fd)) return ThrowArg(env, "mapUpdate", "fd must be a non-negative integer");
  Bytes key = BytesArg(info[1]), val = BytesArg(info[2]);
  if (!key.ok || !val.ok) return ThrowArg(env, "mapUpdate", "key and value must be Uint8Arrays");
  if (bpf_map_update_elem(fd, key.data, val.data, OptU64(info, 3)) != 0)
    return ThrowErrno(env, "bpf_map_update_elem", errno);
  return env.Undefined();
}

// mapDelete(fd, key) -> boolean (false: no such key)
Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!FdArg(info, 0, &fd)) return ThrowArg(env, "mapDelete", "fd must be a non-negative integer");
  Bytes key = BytesArg(info[1]);
  if (!key.ok) return ThrowArg(env, "mapDelete", "key must be a Uint8Array");
  if (bpf_map_delete_elem(fd, key.data) != 0) {
    if (IsEnd(errno)) return Napi::Boolean::New(env, false);
    return ThrowErrno(env, "bpf_map_delete_elem", errno);
  }
  return Napi::Boolean::New(env, true);
}

// mapLookupAndDelete(fd, key, valueOut) -> boolean
Napi::Value MapLookupAndDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!FdArg(info, 0, &fd)) return ThrowArg(env, "mapLookupAndDelete", "fd must be a non-negative integer");
  Bytes key = BytesArg(info[1]), val = BytesArg(info[2]);
  if (!key.ok || !val.ok) return ThrowArg(env, "mapLookupAndDelete", "key and valueOut must be Uint8Arrays");
  Sizes s;
  if (int err = GetSizes(fd, &s)) return ThrowErrno(env, "bpf_obj_get_info_by_fd", err);
  if (key.size < s.key || val.size < s.value) return ThrowArg(env, "mapLookupAndDelete", "buffer too small");
  if (bpf_map_lookup_and_delete_elem(fd, key.data, val.data) != 0) {
    if (IsEnd(errno)) return Napi::Boolean::New(env, false);
    return ThrowErrno(env, "bpf_map_lookup_and_delete_elem", errno);
  }
  return Napi::Boolean::New(env, true);
}

// mapGetNextKey(fd, key | null, nextOut) -> boolean (false: no more keys)
Napi::Value MapGetNextKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!FdArg(info, 0, &fd)) return ThrowArg(env, "mapGetNextKey", "fd must be a non-negative integer");
  Bytes key = BytesArg(info[1]), next = BytesArg(info[2]);
  if (!next.ok) return ThrowArg(env, "mapGetNextKey", "nextOut must be a Uint8Array");
  Sizes s;
  if (int err = GetSizes(fd, &s)) return ThrowErrno(env, "bpf_obj_get_info_by_fd", err);
  if (next.size < s.key || (key.ok && key.size < s.key)) return ThrowArg(env, "mapGetNextKey", "buffer too small");
  if (bpf_map_get_next_key(fd, key.ok ? key.data : nullptr, next.data) != 0) {
    if (IsEnd(errno)) return Napi::Boolean::New(env, false);
    return ThrowErrno(env, "bpf_map_get_next_key", errno);
  }
  return Napi::Boolean::New(env, true);
}

// mapUpdateBatch(fd, keys, values, count, elemFlags = 0) -> number done.
// On failure throws with `done`: how many leading elements were written.
Napi::Value MapUpdateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t count;
  if (!FdArg(info, 0, &fd)) return ThrowArg(env, "mapUpdateBatch", "fd must be a non-negative integer");
  Bytes keys = BytesArg(info[1]), vals = BytesArg(info[2]);
  if (!keys.ok || !vals.ok) return ThrowArg(env, "mapUpdateBatch", "keys and values must be Uint8Arrays");
  if (info.Length() < 4 || !IntArg(info[3], &count) || count < 0 || count > UINT32_MAX)
    return ThrowArg(env, "mapUpdateBatch", "count must be a non-negative integer");
  if (count == 0) return Napi::Number::New(env, 0);
  Sizes s;
  if (int err = GetSizes(fd, &s)) return ThrowErrno(env, "bpf_obj_get_info_by_fd", err);
  if (keys.size < s.key * static_cast<uint64_t>(count) || vals.size < s.value * static_cast<uint64_t>(count))
    return ThrowArg(env, "mapUpdateBatch", "keys/values shorter than count elements");
  if (OptU64(info, 4) & ~kElemFlagsAllowed) return ThrowArg(env, "mapUpdateBatch", "elemFlags may only hold BPF_F_LOCK");
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = OptU64(info, 4));
  uint32_t n = static_cast<uint32_t>(count);
  if (bpf_map_update_batch(fd, keys.data, vals.data, &n, &opts) != 0) {
    int err = errno;
    Napi::Error e = ErrnoError(env, "bpf_map_update_batch", err);
    e.Set("done", Napi::Number::New(env, err == EFAULT ? 0 : n));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, n);
}

// mapDeleteBatch(fd, keys, count, elemFlags = 0) -> number done; throws with `done` on failure
// (ENOENT at the first missing key: the kernel stops there).
Napi::Value MapDeleteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t count;
  if (!FdArg(info, 0, &fd)) return ThrowArg(env, "mapDeleteBatch", "fd must be a non-negative integer");
  Bytes keys = BytesArg(info[1]);
  if (!keys.ok) return ThrowArg(env, "mapDeleteBatch", "keys must be a Uint8Array");
  if (info.Length() < 3 || !IntArg(info[2], &count) || count < 0 || count > UINT32_MAX)
    return ThrowArg(env, "mapDeleteBatch", "count must be a non-negative integer");
  if (count == 0) return Napi::Number::New(env, 0);
  Sizes s;
  if (int err = GetSizes(fd, &s)) return ThrowErrno(env, "bpf_obj_get_info_by_fd", err);
  if (keys.size < s.key * static_cast<uint64_t>(count))
    return ThrowArg(env, "mapDeleteBatch", "keys shorter than count elements");
  if (OptU64(info, 3) & ~kElemFlagsAllowed) return ThrowArg(env, "mapDeleteBatch", "elemFlags may only hold BPF_F_LOCK");
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = OptU64(info, 3));
  uint32_t n = static_cast<uint32_t>(count);
  if (bpf_map_delete_batch(fd, keys.data, &n, &opts) != 0) {
    int err = errno;
    Napi::Error e = ErrnoError(env, "bpf_map_delete_batch", err);
    e.Set("done", Napi::Number::New(env, err == EFAULT ? 0 : n));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, n);
}

// mapLookupBatch(fd, inToken | null, outToken, keysOut, valuesOut, count) -> { count, more }
// The raw primitive; tokens must hold max(keySize, 8) bytes. `more` false: the map is exhausted.
Napi::Value MapLookupBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t count;
  if (!FdArg(info, 0, &fd)) return ThrowArg(env, "mapLookupBatch", "fd must be a non-negative integer");
  Bytes in = BytesArg(info[1]), out = BytesArg(info[2]), keys = BytesArg(info[3]), vals = BytesArg(info[4]);
  if (!out.ok || !keys.ok || !vals.ok) return ThrowArg(env, "mapLookupBatch", "buffers must be Uint8Arrays");
  if (info.Length() < 6 || !IntArg(info[5], &count) || count <= 0 || count > UINT32_MAX)
    return ThrowArg(env, "mapLookupBatch", "count must be a positive integer");
  Sizes s;
  if (int err = GetSizes(fd, &s)) return ThrowErrno(env, "bpf_obj_get_info_by_fd", err);
  size_t tok = std::max<size_t>(s.key, 8);
  if (out.size < tok || (in.ok && in.size < tok) || keys.size < s.key * static_cast<uint64_t>(count) ||
      vals.size < s.value * static_cast<uint64_t>(count))
    return ThrowArg(env, "mapLookupBatch", "buffer too small");
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  uint32_t n = static_cast<uint32_t>(count);
  bool more = true;
  if (bpf_map_lookup_batch(fd, in.ok ? in.data : nullptr, out.data, keys.data, vals.data, &n, &opts) != 0) {
    if (!IsEnd(errno)) return ThrowErrno(env, "bpf_map_lookup_batch", errno);
    more = false;
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("count", n);
  r.Set("more", more);
  return r;
}

namespace {

// All keys by get_next_key. Keys deleted concurrently can restart iteration from the start in some
// map types; the result is deduplicated by the caller if it cares.
int CollectKeys(int fd, const Sizes& s, std::vector<uint8_t>* keys, uint32_t* count) {
  std::vector<uint8_t> cur(s.key), next(s.key);
  bool first = true;
  *count = 0;
  // Bound the walk so a map mutating under us cannot loop forever.
  uint64_t limit = static_cast<uint64_t>(s.max_entries) * 2 + 16;
  while (limit-- > 0) {
    if (bpf_map_get_next_key(fd, first ? nullptr : cur.data(), next.data()) != 0) {
      if (errno == ENOENT) return 0;
      return -errno;
    }
    keys->insert(keys->end(), next.begin(), next.end());
    (*count)++;
    cur.swap(next);
    first = false;
  }
  return 0;
}

}  // namespace

// mapKeys(fd) -> { keys: Buffer, count }
Napi::Value MapKeys(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!FdArg(info, 0, &fd)) return ThrowArg(env, "mapKeys", "fd must be a non-negative integer");
  Sizes s;
  if (int err = GetSizes(fd, &s)) return ThrowErrno(env, "bpf_obj_get_info_by_fd", err);
  std::vector<uint8_t> keys;
  uint32_t count;
  if (int err = CollectKeys(fd, s, &keys, &count)) return ThrowErrno(env, "bpf_map_get_next_key", err);
  Napi::Object r = Napi::Object::New(env);
  r.Set("keys", Napi::Buffer<uint8_t>::Copy(env, keys.data(), keys.size()));
  r.Set("count", count);
  return r;
}

// mapDump(fd) -> { keys: Buffer, values: Buffer, count, batched }
// Every entry, by batch lookup where the map type supports it, else get_next_key + lookup.
Napi::Value MapDump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!FdArg(info, 0, &fd)) return ThrowArg(env, "mapDump", "fd must be a non-negative integer");
  Sizes s;
  if (int err = GetSizes(fd, &s)) return ThrowErrno(env, "bpf_obj_get_info_by_fd", err);
  std::vector<uint8_t> keys, vals;
  uint32_t total = 0;
  bool batched = false;

  if (s.max_entries > 0 && s.type != BPF_MAP_TYPE_LPM_TRIE) {
    size_t tok = std::max<size_t>(s.key, 8);
    std::vector<uint8_t> in(tok), out(tok);
    uint32_t chunk = std::min<uint32_t>(s.max_entries, 4096);
    bool first = true, ok = true;
    for (;;) {
      keys.resize(static_cast<size_t>(total + chunk) * s.key);
      vals.resize(static_cast<size_t>(total + chunk) * s.value);
      uint32_t n = chunk;
      LIBBPF_OPTS(bpf_map_batch_opts, opts);
      int rc = bpf_map_lookup_batch(fd, first ? nullptr : in.data(), out.data(), keys.data() + total * s.key,
                                    vals.data() + static_cast<size_t>(total) * s.value, &n, &opts);
      int err = rc ? errno : 0;
      if (rc && err != ENOENT) {
        if (first && IsUnsupported(err)) {
          ok = false;
          break;
        }
        if (err == ENOSPC && chunk < s.max_entries) {
          // A hash bucket holds more entries than the chunk: retry the same position with more room.
          chunk = std::min<uint32_t>(s.max_entries, chunk * 4);
          continue;
        }
        return ThrowErrno(env, "bpf_map_lookup_batch", err);
      }
      total += n;
      if (rc) break;  // ENOENT: done
      in.swap(out);
      first = false;
    }
    if (ok) batched = true;
    else total = 0;
  }
  if (!batched) {
    keys.clear();
    vals.clear();
    std::vector<uint8_t> all;
    uint32_t count;
    if (int err = CollectKeys(fd, s, &all, &count)) return ThrowErrno(env, "bpf_map_get_next_key", err);
    keys.reserve(all.size());
    vals.reserve(static_cast<size_t>(count) * s.value);
    std::vector<uint8_t> v(s.value);
    for (uint32_t i = 0; i < count; i++) {
      const uint8_t* k = all.data() + static_cast<size_t>(i) * s.key;
      if (bpf_map_lookup_elem(fd, k, v.data()) != 0) {
        if (errno == ENOENT) continue;  // deleted while we walked
        return ThrowErrno(env, "bpf_map_lookup_elem", errno);
      }
      keys.insert(keys.end(), k, k + s.key);
      vals.insert(vals.end(), v.begin(), v.end());
      total++;
    }
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("keys", Napi::Buffer<uint8_t>::Copy(env, keys.data(), static_cast<size_t>(total) * s.key));
  r.Set("values", Napi::Buffer<uint8_t>::Copy(env, vals.data(), static_cast<size_t>(total) * s.value));
  r.Set("count", total);
  r.Set("batched", batched);
  return r;
}

}  // namespace sluice
