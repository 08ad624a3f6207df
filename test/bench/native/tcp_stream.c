// SPDX-License-Identifier: Apache-2.0
/*
 * One bulk TCP stream for test/bench/veth.bench.ts, run inside the bench's own network namespaces:
 * what a transfer between two pods moves per second, where the stack hands the path segments of up to
 * 64 KiB (GSO/GRO), against udp_flood's packet rate of small datagrams.
 *
 *   tcp_stream recv <port> <seconds>              prints "ready", then the bytes received
 *   tcp_stream send <dst ipv4> <port> <seconds>   prints the bytes sent
 *
 * The receiver accepts one connection and reads until the sender closes it, or seconds + 3 pass.
 * The sender writes 128 KiB at a time for the given time, then closes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (128 << 10)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int send_mode(const char *dst, int port, double seconds)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	if (fd < 0 || inet_pton(AF_INET, dst, &sa.sin_addr) != 1 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		perror("send: socket/connect");
		return 1;
	}
	static char buf[CHUNK];
	long long sent = 0;
	double end = now() + seconds;
	while (now() < end) {
		ssize_t n = write(fd, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("write");
			return 1;
		}
		sent += n;
	}
	close(fd);
	printf("%lld\n", sent);
	return 0;
}

static int recv_mode(int port, double seconds)
{
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1)) {
		perror("recv: socket/bind/listen");
		return 1;
	}
	/* Never wait past the run: a path that drops the connection still ends the receiver. */
	struct timeval tv = {.tv_sec = (time_t)seconds + 3, .tv_usec = 0};
	setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	printf("ready\n");
	fflush(stdout);
	int fd = accept(lfd, NULL, NULL);
	if (fd < 0) {
		perror("accept");
		return 1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	static char buf[CHUNK];
	long long got = 0;
	double end = now() + seconds + 3;
	while (now() < end) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("read");
			return 1;
		}
		got += n;
	}
	close(fd);
	close(lfd);
	printf("%lld\n", got);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "send") == 0)
		return send_mode(argv[2], atoi(argv[3]), atof(argv[4]));
	if (argc == 4 && strcmp(argv[1], "recv") == 0)
		return recv_mode(atoi(argv[2]), atof(argv[3]));
	fprintf(stderr, "usage: tcp_stream recv <port> <seconds> | send <dst ipv4> <port> <seconds>\n");
	return 2;
}
