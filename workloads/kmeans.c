/*
 * kmeans: a STAMP-like k-means clustering kernel.
 *
 * Like STAMP's kmeans, points are rows of float features reached through an array of row pointers,
 * clustering runs once for each cluster count in a range, and each pass assigns every point to its
 * nearest centre and accumulates the new centres. Allocation follows the same shape: one block per
 * point row, a membership array, per-run centre rows, and accumulator arrays that are allocated and
 * freed in every pass (STAMP's new_centers / new_centers_len). Points come from Gaussian-like blobs
 * so the clustering converges after a few passes.
 *
 * Usage: kmeans [POINTS] [SEED]; prints one line with the passes taken and a checksum of the final
 * memberships and centres. Arithmetic is IEEE float in a fixed order, so the checksum is the same
 * on every target that does not fuse or reorder float operations (gcc/clang defaults).
 */
#include "common.h"

#define NFEATURES 8
#define MIN_CLUSTERS 3
#define MAX_CLUSTERS 5
#define MAX_PASSES 20
#define NBLOBS 7

static float uniform(rng_t *r) { return (float)(rng_next(r) >> 40) * (1.0f / 16777216.0f); }

static float **make_points(rng_t *r, uint32_t n) {
  float blob[NBLOBS][NFEATURES];
  for (int b = 0; b < NBLOBS; b++)
    for (int j = 0; j < NFEATURES; j++) blob[b][j] = 100.0f * uniform(r);
  float **pts = wl_malloc(n * sizeof *pts);
  for (uint32_t i = 0; i < n; i++) {
    int b = (int)rng_below(r, NBLOBS);
    pts[i] = wl_malloc(NFEATURES * sizeof(float));
    for (int j = 0; j < NFEATURES; j++) {
      float noise = uniform(r); /* one call per statement: operand order is unspecified in C */
      noise += uniform(r);
      noise += uniform(r);
      pts[i][j] = blob[b][j] + 30.0f * (noise - 1.5f);
    }
  }
  return pts;
}

static float dist2(const float *a, const float *b) {
  float d = 0.0f;
  for (int j = 0; j < NFEATURES; j++) d += (a[j] - b[j]) * (a[j] - b[j]);
  return d;
}

static int nearest(const float *p, float **centres, int k) {
  int best = 0;
  float bd = dist2(p, centres[0]);
  for (int c = 1; c < k; c++) {
    float d = dist2(p, centres[c]);
    if (d < bd) {
      bd = d;
      best = c;
    }
  }
  return best;
}

/* One clustering run with k centres; returns the passes taken, leaves the result in centres. */
static int cluster(float **pts, uint32_t n, int k, int *membership, float **centres, rng_t *r) {
  for (int c = 0; c < k; c++) memcpy(centres[c], pts[rng_below(r, n)], NFEATURES * sizeof(float));
  for (uint32_t i = 0; i < n; i++) membership[i] = -1;
  int pass = 0;
  uint32_t delta;
  do {
    float **acc = wl_malloc(k * sizeof *acc);
    for (int c = 0; c < k; c++) acc[c] = wl_calloc(NFEATURES, sizeof(float));
    uint32_t *len = wl_calloc(k, sizeof *len);
    delta = 0;
    for (uint32_t i = 0; i < n; i++) {
      int c = nearest(pts[i], centres, k);
      if (membership[i] != c) delta++;
      membership[i] = c;
      len[c]++;
      for (int j = 0; j < NFEATURES; j++) acc[c][j] += pts[i][j];
    }
    for (int c = 0; c < k; c++) {
      if (len[c])
        for (int j = 0; j < NFEATURES; j++) centres[c][j] = acc[c][j] / (float)len[c];
      wl_free(acc[c]);
    }
    wl_free(acc);
    wl_free(len);
    pass++;
  } while (delta > n / 200 && pass < MAX_PASSES);
  return pass;
}

int main(int argc, char **argv) {
  uint32_t n;
  uint64_t seed;
  wl_args(argc, argv, "kmeans", 1200, MAX_CLUSTERS, &n, &seed);
  rng_t r = {seed};
  float **pts = make_points(&r, n);
  int *membership = wl_malloc(n * sizeof *membership);

  uint64_t sum = CHECKSUM_INIT;
  char stats[96];
  int used = snprintf(stats, sizeof stats, "passes=");
  for (int k = MIN_CLUSTERS; k <= MAX_CLUSTERS; k++) {
    float **centres = wl_malloc(k * sizeof *centres);
    for (int c = 0; c < k; c++) centres[c] = wl_malloc(NFEATURES * sizeof(float));
    int passes = cluster(pts, n, k, membership, centres, &r);
    used += snprintf(stats + used, sizeof stats - used, "%s%d", k > MIN_CLUSTERS ? "," : "", passes);
    for (uint32_t i = 0; i < n; i++) sum = mix64(sum, (uint64_t)membership[i]);
    for (int c = 0; c < k; c++) {
      uint32_t bits[NFEATURES];
      memcpy(bits, centres[c], sizeof bits);
      for (int j = 0; j < NFEATURES; j++) sum = mix64(sum, bits[j]);
      wl_free(centres[c]);
    }
    wl_free(centres);
  }

  for (uint32_t i = 0; i < n; i++) wl_free(pts[i]);
  wl_free(pts);
  wl_free(membership);
  wl_finish("kmeans", n, seed, sum, stats);
  return 0;
}
