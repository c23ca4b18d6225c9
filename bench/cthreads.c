/*
 * cthreads.c: the C baseline of the thread micro-benchmark (bench/ only):
 * pthread_create+join of an empty function, then messages through a bounded
 * mutex+condvar queue of 1024 slots from one thread to another.
 * Usage: cthreads SPAWNS MSGS. Prints one RESULT line.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CAP 1024

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t not_empty, not_full;
  long slot[CAP];
  size_t head, len;
  long n;
} Chan;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *empty(void *arg) { return arg; }

static void chan_send(Chan *c, long v) {
  pthread_mutex_lock(&c->mu);
  while (c->len == CAP) pthread_cond_wait(&c->not_full, &c->mu);
  c->slot[(c->head + c->len++) % CAP] = v;
  pthread_cond_signal(&c->not_empty);
  pthread_mutex_unlock(&c->mu);
}

static long chan_recv(Chan *c) {
  pthread_mutex_lock(&c->mu);
  while (c->len == 0) pthread_cond_wait(&c->not_empty, &c->mu);
  long v = c->slot[c->head];
  c->head = (c->head + 1) % CAP;
  c->len--;
  pthread_cond_signal(&c->not_full);
  pthread_mutex_unlock(&c->mu);
  return v;
}

static void *produce(void *arg) {
  Chan *c = arg;
  for (long i = 1; i <= c->n; i++) chan_send(c, i);
  return NULL;
}

int main(int argc, char **argv) {
  long spawns = argc > 1 ? atol(argv[1]) : 1000, msgs = argc > 2 ? atol(argv[2]) : 100000;
  pthread_t t;
  double t0 = now_s();
  for (long i = 0; i < spawns; i++) {
    if (pthread_create(&t, NULL, empty, NULL) != 0) return 1;
    pthread_join(t, NULL);
  }
  double spawn_s = now_s() - t0;
  static Chan c = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                    PTHREAD_COND_INITIALIZER, {0}, 0, 0, 0 };
  c.n = msgs;
  long sum = 0;
  t0 = now_s();
  if (pthread_create(&t, NULL, produce, &c) != 0) return 1;
  for (long i = 0; i < msgs; i++) sum += chan_recv(&c);
  pthread_join(t, NULL);
  double chan_s = now_s() - t0;
  if (sum != msgs * (msgs + 1) / 2) return 1;
  printf("RESULT spawn_per_s=%.1f msgs_per_s=%.1f\n", (double)spawns / spawn_s,
         (double)msgs / chan_s);
  return 0;
}
