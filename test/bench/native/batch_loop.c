// SPDX-License-Identifier: Apache-2.0
/*
 * The C baseline of test/bench/mapsync.bench.ts: writes the same key/value bytes into the same pinned
 * map with the same libbpf calls the addon makes, and prints the nanoseconds spent in those calls.
 *
 *   batch_loop <batch|single> <pinned map> <keys file> <values file> <count>
 *
 * batch: one bpf_map_update_batch() over all elements (as the addon's mapUpdateBatch does);
 * single: one bpf_map_update_elem() per element. Files hold count keys/values back to back.
 */
#include <bpf/bpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(2);
	}
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	void *buf = malloc(*len ? *len : 1);
	if (!buf || fread(buf, 1, *len, f) != *len) {
		fprintf(stderr, "%s: short read\n", path);
		exit(2);
	}
	fclose(f);
	return buf;
}

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: %s <batch|single> <pinned map> <keys> <values> <count>\n", argv[0]);
		return 2;
	}
	int batch = strcmp(argv[1], "batch") == 0;
	int fd = bpf_obj_get(argv[2]);
	if (fd < 0) {
		fprintf(stderr, "bpf_obj_get %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	struct bpf_map_info info = {};
	__u32 info_len = sizeof(info);
	if (bpf_obj_get_info_by_fd(fd, &info, &info_len)) {
		perror("bpf_obj_get_info_by_fd");
		return 1;
	}
	size_t klen, vlen;
	unsigned char *keys = slurp(argv[3], &klen);
	unsigned char *values = slurp(argv[4], &vlen);
	__u32 count = (__u32)strtoul(argv[5], NULL, 10);
	if (klen != (size_t)count * info.key_size || vlen != (size_t)count * info.value_size) {
		fprintf(stderr, "files do not hold %u elements of %u/%u bytes\n", count, info.key_size, info.value_size);
		return 1;
	}

	long long t0 = now_ns();
	if (batch) {
		DECLARE_LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = 0, .flags = 0);
		__u32 n = count;
		if (bpf_map_update_batch(fd, keys, values, &n, &opts)) {
			fprintf(stderr, "bpf_map_update_batch: %s after %u\n", strerror(errno), n);
			return 1;
		}
	} else {
		for (__u32 i = 0; i < count; i++) {
			if (bpf_map_update_elem(fd, keys + (size_t)i * info.key_size, values + (size_t)i * info.value_size, BPF_ANY)) {
				fprintf(stderr, "bpf_map_update_elem %u: %s\n", i, strerror(errno));
				return 1;
			}
		}
	}
	long long t1 = now_ns();
	printf("%lld\n", t1 - t0);
	return 0;
}
