/* The pod sandbox's `pause` for the Sluice test clusters (localhost/sluice/pause:1), built static by
 * scripts/image-build.sh because no registry with the upstream pause image is reachable. It holds the
 * pod's namespaces: it sleeps until SIGTERM or SIGINT and, as PID 1 of a shared PID namespace, reaps
 * the zombies the pod's processes leave. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define VERSION "1"

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static void on_child(int sig)
{
	int saved = errno;
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

static int on(int sig, void (*handler)(int), int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		printf("pause %s (sluice)\n", VERSION);
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "pause: not PID 1: zombies of the pod are reaped only as PID 1\n");
	/* As PID 1 a signal without a handler is ignored: these make SIGTERM/SIGINT end the pod. */
	if (on(SIGTERM, on_stop, 0) || on(SIGINT, on_stop, 0) || on(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART)) {
		perror("pause: sigaction");
		return 1;
	}
	/* Block the stop signals between the check and the wait so one cannot slip in unnoticed. */
	sigset_t stops, old;
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	sigprocmask(SIG_BLOCK, &stops, &old);
	while (!stop)
		sigsuspend(&old);
	return 0;
}
