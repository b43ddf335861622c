/*
 * kvstore: a memcached-like in-memory key-value cache.
 *
 * Items live in a chained hash table and on one LRU list per slab class. Like memcached, an item
 * is a single block holding its header, key and value, allocated at the chunk size of its slab
 * class (48..1000 bytes, growth factor about 1.5). The request mix is mostly gets with a skewed
 * key popularity (a miss is followed by a set, as a cache-aside client does), plus sets, appends
 * and deletes:
 *   - a set whose value fits the item's class overwrites it in place;
 *   - a set or append that needs another class moves the item with realloc;
 *   - when the memory limit is exceeded the least recently used items are evicted (freed);
 *   - the hash table doubles (calloc new, rehash, free old) when the load factor passes 1.5.
 *
 * Usage: kvstore [OPS] [SEED]; prints one line with hit/miss counts and a checksum of the final
 * table contents.
 */
#include "common.h"

#define NCLASSES 10
static const uint32_t class_size[NCLASSES] = {48, 64, 96, 128, 192, 256, 384, 512, 768, 1000};

typedef struct item {
  struct item *hnext;       /* hash chain */
  struct item *prev, *next; /* LRU list of its class, most recent first */
  uint64_t cas;             /* version, bumped by every write */
  uint32_t hv;              /* hash of the key */
  uint16_t nkey, cls;
  uint32_t nval;
  unsigned char data[];     /* key bytes, then value bytes */
} item;

/* Class choice uses this fixed header size, not sizeof(item), so that wasm32 and 64-bit builds
 * make the same choices and print the same checksum. */
#define ITEM_HDR 48
typedef char item_header_fits[sizeof(item) <= ITEM_HDR ? 1 : -1];

static item **table;
static uint32_t nbuckets, nitems;
static item *lru_head[NCLASSES], *lru_tail[NCLASSES];
static uint64_t mem_used, mem_limit, next_cas = 1;
static uint64_t hits, misses, evictions, moves, rejected;
static unsigned char pool[2048]; /* random bytes that values are copied from, like a network buffer */

static uint32_t hash_key(const unsigned char *k, uint32_t n) {
  uint32_t h = 2166136261u;
  for (uint32_t i = 0; i < n; i++) h = (h ^ k[i]) * 16777619u;
  return h;
}

/* Keys look like "k2f1a:xyz"; the suffix length varies with the id so item sizes vary too. */
static uint32_t make_key(unsigned char *buf, uint32_t id) {
  uint32_t n = 0, suffix = id % 9;
  buf[n++] = 'k';
  do {
    buf[n++] = "0123456789abcdef"[id & 15];
    id >>= 4;
  } while (id);
  buf[n++] = ':';
  for (uint32_t i = 0; i < suffix; i++) buf[n++] = (unsigned char)('a' + i);
  return n;
}

static int class_for(uint32_t bytes) {
  for (int c = 0; c < NCLASSES; c++)
    if (bytes <= class_size[c]) return c;
  return -1;
}

static void lru_unlink(item *it) {
  if (it->prev) it->prev->next = it->next; else lru_head[it->cls] = it->next;
  if (it->next) it->next->prev = it->prev; else lru_tail[it->cls] = it->prev;
}

static void lru_push(item *it) {
  it->prev = NULL;
  it->next = lru_head[it->cls];
  if (it->next) it->next->prev = it; else lru_tail[it->cls] = it;
  lru_head[it->cls] = it;
}

static item **find_slot(const unsigned char *key, uint32_t nkey, uint32_t hv) {
  item **p = &table[hv & (nbuckets - 1)];
  while (*p && !((*p)->hv == hv && (*p)->nkey == nkey && memcmp((*p)->data, key, nkey) == 0)) p = &(*p)->hnext;
  return p;
}

static void grow_table(void) {
  uint32_t nb = nbuckets * 2;
  item **t = wl_calloc(nb, sizeof *t);
  for (uint32_t b = 0; b < nbuckets; b++) {
    item *it = table[b];
    while (it) {
      item *next = it->hnext;
      it->hnext = t[it->hv & (nb - 1)];
      t[it->hv & (nb - 1)] = it;
      it = next;
    }
  }
  wl_free(table);
  table = t;
  nbuckets = nb;
}

static void unlink_item(item *it) {
  item **p = &table[it->hv & (nbuckets - 1)];
  while (*p != it) p = &(*p)->hnext;
  *p = it->hnext;
  lru_unlink(it);
  nitems--;
  mem_used -= class_size[it->cls];
}

static void link_item(item *it) {
  item **b = &table[it->hv & (nbuckets - 1)];
  it->hnext = *b;
  *b = it;
  lru_push(it);
  nitems++;
  mem_used += class_size[it->cls];
  if (nitems > nbuckets + nbuckets / 2) grow_table();
}

/* Evicts from the class being written first (memcached's per-slab LRU), then from the others. */
static void evict_for(int cls, const item *keep) {
  for (int c = cls, tries = 0; mem_used > mem_limit && tries <= NCLASSES; tries++) {
    item *victim = lru_tail[c];
    if (victim == keep) victim = victim->prev;
    if (!victim) {
      c = (c + 1) % NCLASSES;
      continue;
    }
    unlink_item(victim);
    wl_free(victim);
    evictions++;
  }
}

/* Writes nval bytes of value taken from the pool at offset off; moves the item if needed. */
static void store(const unsigned char *key, uint32_t nkey, uint32_t nval, uint32_t off, int append) {
  uint32_t hv = hash_key(key, nkey);
  item **slot = find_slot(key, nkey, hv);
  item *it = *slot;
  uint32_t keep = (it && append) ? it->nval : 0;
  int cls = class_for(ITEM_HDR + nkey + keep + nval);
  if (cls < 0) { /* too large for the biggest class: memcached refuses it too */
    rejected++;
    return;
  }
  if (!it) {
    it = wl_malloc(class_size[cls]);
    it->hv = hv;
    it->nkey = (uint16_t)nkey;
    it->cls = (uint16_t)cls;
    memcpy(it->data, key, nkey);
    link_item(it);
  } else if (it->cls != cls) {
    unlink_item(it);
    it = wl_realloc(it, class_size[cls]);
    it->cls = (uint16_t)cls;
    link_item(it);
    moves++;
  } else {
    lru_unlink(it);
    lru_push(it);
  }
  memcpy(it->data + nkey + keep, pool + off, nval);
  it->nval = keep + nval;
  it->cas = next_cas++;
  evict_for(cls, it);
}

static uint64_t get(const unsigned char *key, uint32_t nkey) {
  item *it = *find_slot(key, nkey, hash_key(key, nkey));
  if (!it) {
    misses++;
    return 0;
  }
  hits++;
  lru_unlink(it);
  lru_push(it);
  const unsigned char *v = it->data + it->nkey;
  return it->cas + it->nval + v[0] + v[it->nval / 2] + v[it->nval - 1];
}

static void del(const unsigned char *key, uint32_t nkey) {
  item **slot = find_slot(key, nkey, hash_key(key, nkey));
  if (*slot) {
    item *it = *slot;
    unlink_item(it);
    wl_free(it);
  }
}

int main(int argc, char **argv) {
  uint32_t ops;
  uint64_t seed;
  wl_args(argc, argv, "kvstore", 12000, 1, &ops, &seed);
  rng_t r = {seed};
  for (uint32_t i = 0; i < sizeof pool; i++) pool[i] = (unsigned char)rng_next(&r);

  uint32_t keys = ops / 10 + 16;
  mem_limit = (uint64_t)keys * 200; /* less than the working set: evictions happen */
  nbuckets = 64;
  table = wl_calloc(nbuckets, sizeof *table);

  unsigned char key[32];
  uint64_t got = 0;
  for (uint32_t n = 0; n < ops; n++) {
    uint32_t id = rng_skewed(&r, keys);
    uint32_t nkey = make_key(key, id);
    uint32_t dice = rng_below(&r, 100);
    /* Each key has a typical value size; sets vary around it so some cross a class boundary. */
    uint32_t base = 8 + (hash_key(key, nkey) % 5 == 0 ? 300 : 0) + hash_key(key, nkey) % 200;
    uint32_t nval = base + rng_below(&r, base / 2 + 1);
    uint32_t off = rng_below(&r, (uint32_t)sizeof pool - 900);
    if (dice < 75) {
      uint64_t v = get(key, nkey);
      if (v) got += v;
      else store(key, nkey, nval, off, 0); /* cache-aside: a miss is followed by a fill */
    } else if (dice < 90) store(key, nkey, nval, off, 0);
    else if (dice < 95) store(key, nkey, 1 + rng_below(&r, 64), off, 1);
    else del(key, nkey);
  }

  uint64_t sum = mix64(CHECKSUM_INIT, got);
  for (uint32_t b = 0; b < nbuckets; b++)
    for (item *it = table[b]; it; it = it->hnext) {
      sum = mix64(sum, it->cas);
      sum = mix_bytes(sum, it->data, it->nkey + it->nval);
    }
  char stats[160];
  snprintf(stats, sizeof stats, "items=%" PRIu32 " hits=%" PRIu64 " misses=%" PRIu64 " evictions=%" PRIu64
           " moves=%" PRIu64 " rejected=%" PRIu64, nitems, hits, misses, evictions, moves, rejected);

  /* Teardown: the trace ends with every object freed. */
  for (int c = 0; c < NCLASSES; c++)
    while (lru_head[c]) {
      item *it = lru_head[c];
      lru_head[c] = it->next;
      wl_free(it);
    }
  wl_free(table);
  wl_finish("kvstore", ops, seed, sum, stats);
  return 0;
}
