// SPDX-License-Identifier: Apache-2.0
/*
 * TCP transactions for test/bench/veth.bench.ts, run inside the bench's own network namespaces: the
 * request/response rate of one kept connection and the rate of whole connections, the two small-message
 * measures netperf calls TCP_RR and TCP_CRR, next to tcp_stream's bulk rate.
 *
 *   tcp_rr serve <port> <seconds>        prints "ready", then the transactions it answered
 *   tcp_rr rr <dst ipv4> <port> <seconds>    one connection, 1-byte request, 1-byte response, repeated
 *   tcp_rr crr <dst ipv4> <port> <seconds>   per transaction: connect, request, response, close
 *
 * The clients print the transactions completed. The server answers connections one after another until
 * a connection's first byte is 'q' (the client's last act), or seconds + 5 pass. A request 'c' asks the
 * server to close after its response: the server closes first and holds the TIME_WAIT, so the client's
 * ports are free again at once (a client closing first would run out of them within seconds, and the
 * rate would measure the port range). Every wait is bounded (5 s): a path that drops the traffic fails
 * the run instead of hanging it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void bounded(int fd)
{
	struct timeval tv = {.tv_sec = 5, .tv_usec = 0};
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int dial(const struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	bounded(fd);
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One byte out, one byte back: 0, or -1 with errno. */
static int transact(int fd, char c)
{
	char r;
	if (write(fd, &c, 1) != 1)
		return -1;
	ssize_t n = read(fd, &r, 1);
	if (n == 1)
		return 0;
	if (n == 0)
		errno = ECONNRESET;
	return -1;
}

static int client(const char *mode, const char *dst, int port, double seconds)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	if (inet_pton(AF_INET, dst, &sa.sin_addr) != 1) {
		fprintf(stderr, "tcp_rr: bad address %s\n", dst);
		return 2;
	}
	int each = strcmp(mode, "crr") == 0;
	long long done = 0;
	int fd = each ? -1 : dial(&sa);
	if (!each && fd < 0) {
		perror("tcp_rr: connect");
		return 1;
	}
	double end = now() + seconds;
	while (now() < end) {
		if (each && (fd = dial(&sa)) < 0) {
			perror("tcp_rr: connect");
			return 1;
		}
		if (transact(fd, each ? 'c' : 'r')) {
			perror("tcp_rr: transaction");
			return 1;
		}
		done++;
		if (each) {
			/* The server's FIN, then ours: the client closes second. */
			char eof;
			if (read(fd, &eof, 1) != 0) {
				perror("tcp_rr: close");
				return 1;
			}
			close(fd);
		}
	}
	if (!each)
		close(fd);
	/* Tells the server to finish. */
	int q = dial(&sa);
	if (q < 0 || write(q, "q", 1) != 1) {
		perror("tcp_rr: quit");
		return 1;
	}
	close(q);
	printf("%lld\n", done);
	return 0;
}

static int serve(int port, double seconds)
{
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 128)) {
		perror("tcp_rr: socket/bind/listen");
		return 1;
	}
	bounded(lfd);
	printf("ready\n");
	fflush(stdout);
	long long answered = 0;
	double end = now() + seconds + 5;
	while (now() < end) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			perror("tcp_rr: accept");
			return 1;
		}
		bounded(fd);
		char c;
		ssize_t n;
		while ((n = read(fd, &c, 1)) == 1) {
			if (c == 'q') {
				close(fd);
				close(lfd);
				printf("%lld\n", answered);
				return 0;
			}
			if (write(fd, &c, 1) != 1)
				break;
			answered++;
			if (c == 'c')
				break;
		}
		close(fd);
	}
	fprintf(stderr, "tcp_rr: no quit from the client within %.0f s\n", seconds + 5);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc == 5 && (strcmp(argv[1], "rr") == 0 || strcmp(argv[1], "crr") == 0))
		return client(argv[1], argv[2], atoi(argv[3]), atof(argv[4]));
	if (argc == 4 && strcmp(argv[1], "serve") == 0)
		return serve(atoi(argv[2]), atof(argv[3]));
	fprintf(stderr, "usage: tcp_rr serve <port> <seconds> | rr|crr <dst ipv4> <port> <seconds>\n");
	return 2;
}
