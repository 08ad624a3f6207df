// SPDX-License-Identifier: Apache-2.0
/*
 * Bounded UDP traffic for test/bench/veth.bench.ts, run inside the bench's own network namespaces.
 *
 *   udp_flood send <dst ipv4> <port> <seconds> <payload bytes>   prints packets sent
 *   udp_flood recv <port> <seconds>                              prints packets received
 *
 * The sender writes 64-message sendmmsg batches on one connected socket for the given time; the
 * receiver counts datagrams until it has heard nothing for 500 ms after the first, or seconds + 3 pass.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int send_mode(const char *dst, int port, double seconds, int payload)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	if (fd < 0 || inet_pton(AF_INET, dst, &sa.sin_addr) != 1 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		perror("send: socket/connect");
		return 1;
	}
	static char buf[65536];
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = buf;
		iov[i].iov_len = payload;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	long long sent = 0;
	double end = now() + seconds;
	while (now() < end) {
		int n = sendmmsg(fd, msgs, BATCH, 0);
		if (n < 0) {
			if (errno == ENOBUFS || errno == EAGAIN || errno == EPERM || errno == ECONNREFUSED)
				continue; /* a dropping path: keep offering load */
			perror("sendmmsg");
			return 1;
		}
		sent += n;
	}
	printf("%lld\n", sent);
	return 0;
}

static int recv_mode(int port, double seconds)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
	int rcvbuf = 8 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		perror("recv: socket/bind");
		return 1;
	}
	struct timeval tv = {.tv_sec = 0, .tv_usec = 500000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	printf("ready\n");
	fflush(stdout);
	static char bufs[BATCH][2048];
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = sizeof(bufs[i]);
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	long long got = 0;
	double deadline = now() + seconds + 3;
	while (now() < deadline) {
		int n = recvmmsg(fd, msgs, BATCH, 0, NULL);
		if (n < 0) {
			if ((errno == EAGAIN || errno == EWOULDBLOCK) && got > 0)
				break; /* quiet for 500 ms after traffic: the sender is done */
			continue;
		}
		got += n;
	}
	printf("%lld\n", got);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 6 && strcmp(argv[1], "send") == 0)
		return send_mode(argv[2], atoi(argv[3]), atof(argv[4]), atoi(argv[5]));
	if (argc == 4 && strcmp(argv[1], "recv") == 0)
		return recv_mode(atoi(argv[2]), atof(argv[3]));
	fprintf(stderr, "usage: %s send <dst> <port> <seconds> <payload> | recv <port> <seconds>\n", argv[0]);
	return 2;
}
