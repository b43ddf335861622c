/*
 * tcdb: a Tokyo-Cabinet-like on-heap B+tree database (in the spirit of TC's tcbdb with its pages
 * cached in memory).
 *
 * Records are separate heap blocks holding key and value bytes; keys compare lexically like TC's
 * default comparator. A leaf keeps a sorted array of record pointers that grows and shrinks with
 * realloc (TC's TCPTRLIST) and links to its neighbours for cursors. Internal nodes hold separator
 * keys as their own small heap copies, as TC's index pages do. The operation mix is puts (insert or
 * overwrite; an overwrite of a different size reallocs the record), gets, deletes and short range
 * scans with a cursor along the leaf chain. Full leaves and index nodes split; emptied leaves stay
 * (TC also defers reorganisation).
 *
 * Usage: tcdb [OPS] [SEED]; prints one line with record/node counts and a checksum of all records
 * in key order.
 */
#include "common.h"

#define ORDER 24 /* most records per leaf, most separators per index node */
#define MAXDEPTH 16

typedef struct rec { uint32_t ksiz, vsiz; unsigned char data[]; } rec; /* key bytes, then value */
typedef struct key { uint32_t len; unsigned char b[]; } key;

typedef struct node { uint32_t is_leaf, n; } node;
typedef struct leaf {
  node h;
  uint32_t cap;
  rec **recs; /* sorted by key, capacity cap */
  struct leaf *prev, *next;
} leaf;
typedef struct inode {
  node h;
  key *seps[ORDER];        /* kids[i] holds keys < seps[i] <= keys of kids[i+1] */
  node *kids[ORDER + 1];
} inode;

static node *root;
static leaf *first_leaf;
static uint32_t nrecs, nleaves, ninodes;
static uint64_t found, notfound, scanned;
static unsigned char pool[1024];

static int cmp(const unsigned char *a, uint32_t an, const unsigned char *b, uint32_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  return c ? c : (an > bn) - (an < bn);
}

/* Keys like "00042137" with a variable suffix ("00042137/ab"), so record sizes vary. */
static uint32_t make_key(unsigned char *buf, uint32_t id) {
  uint32_t x = id * 2654435761u % 100000000u, n = 8;
  for (int i = 7; i >= 0; i--, x /= 10) buf[i] = (unsigned char)('0' + x % 10);
  uint32_t suffix = id % 5;
  if (suffix) buf[n++] = '/';
  for (uint32_t i = 0; i < suffix * 3; i++) buf[n++] = (unsigned char)('a' + (id + i) % 26);
  return n;
}

static leaf *new_leaf(uint32_t cap) {
  leaf *l = wl_malloc(sizeof *l);
  l->h.is_leaf = 1;
  l->h.n = 0;
  l->cap = cap;
  l->recs = wl_malloc(cap * sizeof *l->recs);
  l->prev = l->next = NULL;
  nleaves++;
  return l;
}

/* Descends to the leaf for k, recording the index nodes passed and the child taken in each. */
static leaf *descend(const unsigned char *k, uint32_t kn, inode **path, uint32_t *slot, int *depth) {
  node *x = root;
  *depth = 0;
  while (!x->is_leaf) {
    inode *in = (inode *)x;
    uint32_t lo = 0, hi = in->h.n;
    while (lo < hi) {
      uint32_t mid = (lo + hi) / 2;
      if (cmp(k, kn, in->seps[mid]->b, in->seps[mid]->len) < 0) hi = mid;
      else lo = mid + 1;
    }
    path[*depth] = in;
    slot[(*depth)++] = lo;
    x = in->kids[lo];
  }
  return (leaf *)x;
}

/* First position in l whose key is >= k; *hit tells whether it is equal. */
static uint32_t leaf_search(const leaf *l, const unsigned char *k, uint32_t kn, int *hit) {
  uint32_t lo = 0, hi = l->h.n;
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    if (cmp(l->recs[mid]->data, l->recs[mid]->ksiz, k, kn) < 0) lo = mid + 1;
    else hi = mid;
  }
  *hit = lo < l->h.n && cmp(l->recs[lo]->data, l->recs[lo]->ksiz, k, kn) == 0;
  return lo;
}

static key *copy_key(const unsigned char *b, uint32_t n) {
  key *k = wl_malloc(sizeof *k + n);
  k->len = n;
  memcpy(k->b, b, n);
  return k;
}

/* Inserts separator sep and right child into the index nodes along path, splitting upward. */
static void insert_up(inode **path, uint32_t *slot, int depth, key *sep, node *right) {
  while (depth > 0) {
    inode *in = path[--depth];
    uint32_t at = slot[depth];
    memmove(&in->seps[at + 1], &in->seps[at], (in->h.n - at) * sizeof(key *));
    memmove(&in->kids[at + 2], &in->kids[at + 1], (in->h.n - at) * sizeof(node *));
    in->seps[at] = sep;
    in->kids[at + 1] = right;
    if (++in->h.n < ORDER) return;
    /* Full: the middle separator moves up, the upper half goes to a new node. */
    inode *r = wl_malloc(sizeof *r);
    uint32_t mid = ORDER / 2;
    r->h.is_leaf = 0;
    r->h.n = ORDER - mid - 1;
    memcpy(r->seps, &in->seps[mid + 1], r->h.n * sizeof(key *));
    memcpy(r->kids, &in->kids[mid + 1], (r->h.n + 1) * sizeof(node *));
    sep = in->seps[mid];
    in->h.n = mid;
    right = (node *)r;
    ninodes++;
  }
  inode *nr = wl_malloc(sizeof *nr);
  nr->h.is_leaf = 0;
  nr->h.n = 1;
  nr->seps[0] = sep;
  nr->kids[0] = root;
  nr->kids[1] = right;
  root = (node *)nr;
  ninodes++;
}

static void put(const unsigned char *k, uint32_t kn, const unsigned char *v, uint32_t vn) {
  inode *path[MAXDEPTH];
  uint32_t slot[MAXDEPTH];
  int depth, hit;
  leaf *l = descend(k, kn, path, slot, &depth);
  uint32_t at = leaf_search(l, k, kn, &hit);
  if (hit) { /* overwrite: TC reallocates the record when the value size changes */
    rec *r = l->recs[at];
    if (r->vsiz != vn) l->recs[at] = r = wl_realloc(r, sizeof *r + kn + vn);
    r->vsiz = vn;
    memcpy(r->data + kn, v, vn);
    return;
  }
  rec *r = wl_malloc(sizeof *r + kn + vn);
  r->ksiz = kn;
  r->vsiz = vn;
  memcpy(r->data, k, kn);
  memcpy(r->data + kn, v, vn);
  if (l->h.n == l->cap) l->recs = wl_realloc(l->recs, (l->cap *= 2) * sizeof *l->recs);
  memmove(&l->recs[at + 1], &l->recs[at], (l->h.n - at) * sizeof(rec *));
  l->recs[at] = r;
  l->h.n++;
  nrecs++;
  if (l->h.n < ORDER) return;
  /* Split the full leaf in halves; the right half's first key becomes the separator. */
  leaf *nl = new_leaf(16);
  uint32_t mid = ORDER / 2;
  nl->h.n = l->h.n - mid;
  memcpy(nl->recs, &l->recs[mid], nl->h.n * sizeof(rec *));
  l->h.n = mid;
  nl->next = l->next;
  nl->prev = l;
  if (l->next) l->next->prev = nl;
  l->next = nl;
  insert_up(path, slot, depth, copy_key(nl->recs[0]->data, nl->recs[0]->ksiz), (node *)nl);
}

static uint64_t get(const unsigned char *k, uint32_t kn) {
  inode *path[MAXDEPTH];
  uint32_t slot[MAXDEPTH];
  int depth, hit;
  leaf *l = descend(k, kn, path, slot, &depth);
  uint32_t at = leaf_search(l, k, kn, &hit);
  if (!hit) {
    notfound++;
    return 0;
  }
  found++;
  rec *r = l->recs[at];
  return r->vsiz + r->data[r->ksiz] + r->data[r->ksiz + r->vsiz - 1];
}

static void out(const unsigned char *k, uint32_t kn) {
  inode *path[MAXDEPTH];
  uint32_t slot[MAXDEPTH];
  int depth, hit;
  leaf *l = descend(k, kn, path, slot, &depth);
  uint32_t at = leaf_search(l, k, kn, &hit);
  if (!hit) return;
  wl_free(l->recs[at]);
  memmove(&l->recs[at], &l->recs[at + 1], (l->h.n - at - 1) * sizeof(rec *));
  l->h.n--;
  nrecs--;
  if (l->cap > 4 && l->h.n < l->cap / 4) l->recs = wl_realloc(l->recs, (l->cap /= 2) * sizeof *l->recs);
}

/* A cursor from k forward over up to count records along the leaf chain (tcbdbcurjump + next). */
static uint64_t range(const unsigned char *k, uint32_t kn, uint32_t count) {
  inode *path[MAXDEPTH];
  uint32_t slot[MAXDEPTH];
  int depth, hit;
  leaf *l = descend(k, kn, path, slot, &depth);
  uint32_t at = leaf_search(l, k, kn, &hit);
  uint64_t h = 0;
  while (l && count) {
    for (; at < l->h.n && count; at++, count--, scanned++) h = mix64(h, l->recs[at]->vsiz + l->recs[at]->data[0]);
    l = l->next;
    at = 0;
  }
  return h;
}

static void free_tree(node *x) {
  if (x->is_leaf) {
    leaf *l = (leaf *)x;
    for (uint32_t i = 0; i < l->h.n; i++) wl_free(l->recs[i]);
    wl_free(l->recs);
  } else {
    inode *in = (inode *)x;
    for (uint32_t i = 0; i <= in->h.n; i++) free_tree(in->kids[i]);
    for (uint32_t i = 0; i < in->h.n; i++) wl_free(in->seps[i]);
  }
  wl_free(x);
}

int main(int argc, char **argv) {
  uint32_t ops;
  uint64_t seed;
  wl_args(argc, argv, "tcdb", 8000, 1, &ops, &seed);
  rng_t r = {seed};
  for (uint32_t i = 0; i < sizeof pool; i++) pool[i] = (unsigned char)rng_next(&r);
  first_leaf = new_leaf(4);
  root = (node *)first_leaf;

  uint32_t keys = ops / 3 + 16;
  unsigned char k[32];
  uint64_t got = 0;
  for (uint32_t n = 0; n < ops; n++) {
    uint32_t kn = make_key(k, rng_below(&r, keys));
    uint32_t dice = rng_below(&r, 100);
    if (dice < 45) {
      uint32_t vn = 8 + rng_skewed(&r, 400);
      put(k, kn, pool + rng_below(&r, (uint32_t)sizeof pool - vn), vn);
    } else if (dice < 80) got += get(k, kn);
    else if (dice < 90) out(k, kn);
    else got = mix64(got, range(k, kn, 1 + rng_below(&r, 32)));
  }

  uint64_t sum = mix64(CHECKSUM_INIT, got);
  for (leaf *l = first_leaf; l; l = l->next)
    for (uint32_t i = 0; i < l->h.n; i++) sum = mix_bytes(sum, l->recs[i]->data, l->recs[i]->ksiz + l->recs[i]->vsiz);
  char stats[160];
  snprintf(stats, sizeof stats, "records=%" PRIu32 " leaves=%" PRIu32 " inodes=%" PRIu32 " found=%" PRIu64
           " notfound=%" PRIu64 " scanned=%" PRIu64, nrecs, nleaves, ninodes, found, notfound, scanned);
  free_tree(root);
  wl_finish("tcdb", ops, seed, sum, stats);
  return 0;
}
