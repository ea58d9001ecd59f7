/*
 * loom-spawner: starts a node's task processes with posix_spawn.
 *
 * Why it exists: Node's child_process (libuv) starts a process with fork(),
 * which copies the page tables of the whole node process. On virtual
 * machines that is slow: here a fork+exec from a 100 MB node costs 5-13 ms
 * of blocked event loop and CPU, while glibc's posix_spawn (clone with
 * CLONE_VM|CLONE_VFORK, no page table copy) from this small process costs
 * about half a millisecond. See spawner.ts for the node's side.
 *
 * Protocol. First stdin line: the 32-character token, then requests:
 *   "<n>\n" followed by n bytes of NUL-terminated fields:
 *     seq, not-after (Unix ms; 0 = none), cwd ("" = inherit), argc,
 *     argv[0..argc), envc, env[0..envc)
 * For each request the spawner connects twice to the node's unix socket
 * (argv[1]) and writes a 42-byte header "<token><seq as 8 hex><1|2>\n" on
 * each connection; the connections become the task's stdout and stderr.
 * stdin is /dev/null; the task gets its own session (pgid = pid) and
 * default signal dispositions with nothing blocked.
 * Replies on stdout, one line each:
 *   pid <seq> <pid>        started
 *   err <seq> <errno>      not started (the node falls back to its own spawn)
 *   late <seq>             not started: the clock passed not-after (the node's
 *                          fence deadline; the node may have been frozen since
 *                          it asked, and its lease may be gone)
 *   exit <pid> <code>      the task exited
 *   sig <pid> <signo>      the task was killed by a signal
 *   (before either, whatever else is left in the task's process group is
 *   killed with SIGKILL: see reap_children)
 * stdin EOF: exit at once (tasks are not ours to kill: the reaper does it).
 *
 * Single-threaded on purpose: posix_spawnp looks up the command on this
 * process's PATH, which is set to the task's PATH just before each call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TOKEN_LEN 32
#define MAX_REQUEST (64u * 1024u * 1024u)

static struct sockaddr_un node_addr;
/* LOOM_SPAWNER_FAILPOINT=exit-after-spawn: for tests only (see spawn_one). */
static int die_after_spawn;
/* Niceness of every task (argv[2]; 0 = as this process). */
static int task_nice;

/*
 * Lowers a task's CPU priority (--task-nice): its nice value, and its
 * autogroup's where the kernel schedules by autogroup (each task is a
 * session of its own, and a nice value counts only inside its group). The
 * node's task-priority.ts does the same for tasks it starts itself.
 */
static void lower_priority(pid_t pid) {
  if (task_nice <= 0) return;
  setpriority(PRIO_PROCESS, pid, task_nice);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/autogroup", (int)pid);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  dprintf(fd, "%d", task_nice);
  close(fd);
}
static char token[TOKEN_LEN + 1];

static void die(const char *what) {
  dprintf(2, "loom-spawner: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (fd == 1) exit(0); /* the node is gone */
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

static void reply(const char *fmt, ...) {
  char line[96];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  write_all(1, line, (size_t)n);
}

/* A connection to the node carrying stream 1 (stdout) or 2 (stderr) of task seq; -1 on failure. */
static int connect_stream(unsigned long seq, int stream) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&node_addr, sizeof node_addr) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  char header[TOKEN_LEN + 11];
  snprintf(header, sizeof header, "%s%08lx%d\n", token, seq & 0xffffffffUL, stream);
  write_all(fd, header, TOKEN_LEN + 10);
  return fd;
}

/* Splits n bytes of NUL-terminated fields; returns the count, or -1 if malformed. */
static int split_fields(char *p, size_t n, char ***out) {
  if (n == 0 || p[n - 1] != '\0') return -1;
  size_t count = 0;
  for (size_t i = 0; i < n; i++)
    if (p[i] == '\0') count++;
  char **f = malloc((count + 1) * sizeof *f);
  if (!f) return -1;
  size_t k = 0;
  for (size_t i = 0; i < n; k++) {
    f[k] = p + i;
    i += strlen(p + i) + 1;
  }
  f[k] = NULL;
  *out = f;
  return (int)count;
}

static void spawn_one(char *payload, size_t n) {
  char **f = NULL;
  int count = split_fields(payload, n, &f);
  /* Any request with a seq gets an answer (err below), so the node never waits on it. */
  if (count < 1) {
    dprintf(2, "loom-spawner: malformed request ignored\n");
    free(f);
    return;
  }
  unsigned long seq = strtoul(f[0], NULL, 10);
  if (count < 5) {
    reply("err %lu %d\n", seq, EINVAL);
    free(f);
    return;
  }
  long long not_after = strtoll(f[1], NULL, 10);
  const char *cwd = f[2];
  long argc = strtol(f[3], NULL, 10);
  if (argc < 1 || 4 + argc >= count) {
    reply("err %lu %d\n", seq, EINVAL);
    free(f);
    return;
  }
  long envc = strtol(f[4 + argc], NULL, 10);
  if (envc < 0 || 5 + argc + envc != count) {
    reply("err %lu %d\n", seq, EINVAL);
    free(f);
    return;
  }
  char **argv = malloc((size_t)(argc + 1) * sizeof *argv);
  char **envp = malloc((size_t)(envc + 1) * sizeof *envp);
  if (!argv || !envp) {
    reply("err %lu %d\n", seq, ENOMEM);
    free(argv), free(envp), free(f);
    return;
  }
  for (long i = 0; i < argc; i++) argv[i] = f[4 + i];
  argv[argc] = NULL;
  const char *path = NULL;
  for (long i = 0; i < envc; i++) {
    envp[i] = f[5 + argc + i];
    if (strncmp(envp[i], "PATH=", 5) == 0) path = envp[i] + 5;
  }
  envp[envc] = NULL;

  if (not_after > 0) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if ((long long)now.tv_sec * 1000 + now.tv_nsec / 1000000 >= not_after) {
      reply("late %lu\n", seq);
      free(argv), free(envp), free(f);
      return;
    }
  }

  int out = connect_stream(seq, 1);
  int err = out < 0 ? -1 : connect_stream(seq, 2);
  if (out < 0 || err < 0) {
    int e = errno;
    if (out >= 0) close(out);
    reply("err %lu %d\n", seq, e);
    free(argv), free(envp), free(f);
    return;
  }

  /* The command is looked up on the task's PATH, as execvp in the task would. */
  if (path) setenv("PATH", path, 1);
  else unsetenv("PATH");

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out, 1);
  posix_spawn_file_actions_adddup2(&fa, err, 2);
  if (cwd[0] != '\0') posix_spawn_file_actions_addchdir_np(&fa, cwd);
  posix_spawnattr_init(&at);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, &at, argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close(out);
  close(err);
  if (rc == 0) lower_priority(pid);
  /* Test failpoint: die between starting a task and reporting it (the node must not lose it). */
  if (rc == 0 && die_after_spawn) _exit(3);
  if (rc != 0) reply("err %lu %d\n", seq, rc);
  else reply("pid %lu %d\n", seq, (int)pid);
  free(argv), free(envp), free(f);
}

/*
 * A task that exited is looked at before it is reaped (WNOWAIT): while it is
 * an unreaped zombie its pid, which is its process group's id, cannot be
 * reused, so killing the group here can only hit what the task left behind
 * (background jobs that would hold its output open and outlive it).
 */
static void reap_children(void) {
  for (;;) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) return;
    pid_t pid = info.si_pid;
    kill(-pid, SIGKILL);
    int status;
    if (waitpid(pid, &status, 0) != pid) continue;
    if (WIFEXITED(status)) reply("exit %d %d\n", (int)pid, WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) reply("sig %d %d\n", (int)pid, WTERMSIG(status));
  }
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3 || strlen(argv[1]) >= sizeof node_addr.sun_path) {
    dprintf(2, "usage: loom-spawner <unix socket path, < %zu bytes> [task nice 0-19]\n", sizeof node_addr.sun_path);
    return 2;
  }
  if (argc == 3) {
    char *end;
    long n = strtol(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || n < 0 || n > 19) {
      dprintf(2, "loom-spawner: task nice must be 0-19, got \"%s\"\n", argv[2]);
      return 2;
    }
    task_nice = (int)n;
  }
  const char *failpoint = getenv("LOOM_SPAWNER_FAILPOINT");
  die_after_spawn = failpoint && strcmp(failpoint, "exit-after-spawn") == 0;
  node_addr.sun_family = AF_UNIX;
  strcpy(node_addr.sun_path, argv[1]);
  signal(SIGPIPE, SIG_IGN);
  /* Whatever the node let us inherit must not reach the tasks. */
  close_range(3, ~0U, 0);

  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &chld, NULL) != 0) die("sigprocmask");
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) die("signalfd");
  if (fcntl(0, F_SETFD, FD_CLOEXEC) != 0 || fcntl(1, F_SETFD, FD_CLOEXEC) != 0) die("fcntl");

  size_t cap = 64 * 1024, len = 0;
  char *buf = malloc(cap);
  if (!buf) die("malloc");
  int have_token = 0;
  for (;;) {
    struct pollfd p[2] = {{.fd = 0, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (p[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == sizeof si) {
      }
      reap_children();
    }
    if (!p[0].revents) continue;
    if (len == cap) {
      cap *= 2;
      char *grown = realloc(buf, cap);
      if (!grown) die("realloc");
      buf = grown;
    }
    ssize_t r = read(0, buf + len, cap - len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0; /* the node closed our stdin: it is gone or done */
    len += (size_t)r;
    size_t at = 0;
    for (;;) {
      char *nl = memchr(buf + at, '\n', len - at);
      if (!nl) break;
      *nl = '\0';
      if (!have_token) {
        if (strlen(buf + at) != TOKEN_LEN) {
          dprintf(2, "loom-spawner: bad token line\n");
          return 2;
        }
        memcpy(token, buf + at, TOKEN_LEN + 1);
        have_token = 1;
        at = (size_t)(nl - buf) + 1;
        continue;
      }
      unsigned long n = strtoul(buf + at, NULL, 10);
      if (n == 0 || n > MAX_REQUEST) {
        dprintf(2, "loom-spawner: bad request length\n");
        return 2;
      }
      size_t body = (size_t)(nl - buf) + 1;
      if (len - body < n) {
        *nl = '\n'; /* incomplete: keep the length line for the next read */
        size_t need = (body - at) + n; /* bytes kept once the buffer is compacted below */
        while (cap < need) cap *= 2;
        char *grown = realloc(buf, cap);
        if (!grown) die("realloc");
        buf = grown;
        break;
      }
      spawn_one(buf + body, n);
      at = body + n;
    }
    memmove(buf, buf + at, len - at);
    len -= at;
  }
}
