/* Float32 multiply-add peak of this CPU with AVX-512: the ceiling for any conv kernel.

     gcc -O2 -mavx512f -pthread benchmarks/investigations/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak 2

   Each thread runs 12 independent chains of 16-lane fused multiply-adds (enough to hide
   the FMA latency on both ports) and the program prints G MAC/s summed over the threads.
   Not a test: used by docs/export.md to bound what batch-1 float32 inference can reach. */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHAINS 12
#define ITERATIONS 100000000L

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *run(void *result) {
  __m512 acc[CHAINS];
  const __m512 scale = _mm512_set1_ps(0.999999f), shift = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
  for (long k = 0; k < ITERATIONS; k++)
    /* unrolled so that the chains stay in registers */
#pragma GCC unroll 12
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], scale, shift);
  float sum = 0;  /* use the result so the loop is not optimised away */
  for (int i = 0; i < CHAINS; i++) sum += _mm512_reduce_add_ps(acc[i]);
  *(float *)result = sum;
  return NULL;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  if (threads < 1 || threads > 64) {
    fprintf(stderr, "usage: %s [THREADS 1..64]\n", argv[0]);
    return 2;
  }
  pthread_t ids[64];
  float results[64];
  double start = now();
  for (int t = 0; t < threads; t++) pthread_create(&ids[t], NULL, run, &results[t]);
  for (int t = 0; t < threads; t++) pthread_join(ids[t], NULL);
  double seconds = now() - start;
  printf("%d threads: %.0f G MAC/s (float32, AVX-512 FMA; checksum %.2f)\n", threads,
         threads * (double)ITERATIONS * CHAINS * 16 / seconds / 1e9, results[0]);
  return 0;
}
