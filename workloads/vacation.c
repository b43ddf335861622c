/*
 * vacation: a STAMP-like travel reservation system on red-black trees.
 *
 * As in STAMP's vacation, a manager keeps four tables keyed by id: cars, flights and rooms (each a
 * reservation record with total/used/free counts and a price) and customers (each with a sorted list
 * of the reservations they hold). Each table is a left-leaning red-black tree whose nodes are heap
 * blocks. Client transactions are, as in STAMP:
 *   - make reservation (most): query several random items, then reserve the most expensive car,
 *     flight and room found for a customer, adding the customer if new;
 *   - delete customer: cancel all of a customer's reservations, free the list, remove the customer;
 *   - update tables: add capacity to random items (inserting them if absent) or retire them.
 * All of them insert and delete tree nodes, reservation records and list entries.
 *
 * Usage: vacation [TRANSACTIONS] [SEED]; prints one line with the transaction counts and a
 * checksum of all four tables.
 */
#include "common.h"

enum { CAR, FLIGHT, ROOM, NTYPES };

typedef struct rb {
  uint32_t key, red;
  void *val;
  struct rb *left, *right;
} rb;

typedef struct reservation { uint32_t id, used, free, total, price; } reservation;
typedef struct info { uint32_t type, id, price; struct info *next; } info; /* sorted by (type, id) */
typedef struct customer { uint32_t id; info *list; } customer;

static rb *tables[NTYPES], *customers;
static uint32_t ntables[NTYPES], ncustomers;

/* ---- left-leaning red-black tree (Sedgewick); callers insert only absent and delete only present keys ---- */

static int is_red(const rb *h) { return h && h->red; }

static rb *rot_left(rb *h) {
  rb *x = h->right;
  h->right = x->left;
  x->left = h;
  x->red = h->red;
  h->red = 1;
  return x;
}

static rb *rot_right(rb *h) {
  rb *x = h->left;
  h->left = x->right;
  x->right = h;
  x->red = h->red;
  h->red = 1;
  return x;
}

static void flip(rb *h) {
  h->red = !h->red;
  h->left->red = !h->left->red;
  h->right->red = !h->right->red;
}

static rb *fixup(rb *h) {
  if (is_red(h->right) && !is_red(h->left)) h = rot_left(h);
  if (is_red(h->left) && is_red(h->left->left)) h = rot_right(h);
  if (is_red(h->left) && is_red(h->right)) flip(h);
  return h;
}

static void *rb_find(const rb *h, uint32_t key) {
  while (h && h->key != key) h = key < h->key ? h->left : h->right;
  return h ? h->val : NULL;
}

static rb *rb_insert(rb *h, uint32_t key, void *val) {
  if (!h) {
    h = wl_malloc(sizeof *h);
    *h = (rb){key, 1, val, NULL, NULL};
    return h;
  }
  if (key < h->key) h->left = rb_insert(h->left, key, val);
  else h->right = rb_insert(h->right, key, val);
  return fixup(h);
}

static rb *move_red_left(rb *h) {
  flip(h);
  if (is_red(h->right->left)) {
    h->right = rot_right(h->right);
    h = rot_left(h);
    flip(h);
  }
  return h;
}

static rb *move_red_right(rb *h) {
  flip(h);
  if (is_red(h->left->left)) {
    h = rot_right(h);
    flip(h);
  }
  return h;
}

static rb *rb_delete_min(rb *h, rb *into) {
  if (!h->left) { /* the minimum's key and value move into the node being deleted */
    into->key = h->key;
    into->val = h->val;
    wl_free(h);
    return NULL;
  }
  if (!is_red(h->left) && !is_red(h->left->left)) h = move_red_left(h);
  h->left = rb_delete_min(h->left, into);
  return fixup(h);
}

static rb *rb_delete(rb *h, uint32_t key) {
  if (key < h->key) {
    if (!is_red(h->left) && !is_red(h->left->left)) h = move_red_left(h);
    h->left = rb_delete(h->left, key);
  } else {
    if (is_red(h->left)) h = rot_right(h);
    if (key == h->key && !h->right) {
      wl_free(h);
      return NULL;
    }
    if (!is_red(h->right) && !is_red(h->right->left)) h = move_red_right(h);
    if (key == h->key) h->right = rb_delete_min(h->right, h);
    else h->right = rb_delete(h->right, key);
  }
  return fixup(h);
}

static void rb_put(rb **root, uint32_t key, void *val) {
  *root = rb_insert(*root, key, val);
  (*root)->red = 0;
}

static void rb_remove(rb **root, uint32_t key) {
  *root = rb_delete(*root, key);
  if (*root) (*root)->red = 0;
}

/* ---- manager ---- */

static void add_item(int type, uint32_t id, uint32_t num, uint32_t price) {
  reservation *r = rb_find(tables[type], id);
  if (!r) {
    r = wl_malloc(sizeof *r);
    *r = (reservation){id, 0, 0, 0, price};
    rb_put(&tables[type], id, r);
    ntables[type]++;
  }
  r->free += num;
  r->total += num;
  r->price = price;
}

/* STAMP retires flights outright and shrinks cars and rooms; either only when nothing is booked. */
static void retire_item(int type, uint32_t id) {
  reservation *r = rb_find(tables[type], id);
  if (!r || r->used) return;
  uint32_t cut = type == FLIGHT ? r->total : (r->total < 100 ? r->total : 100);
  r->total -= cut;
  r->free -= cut;
  if (r->total == 0) {
    rb_remove(&tables[type], id);
    wl_free(r);
    ntables[type]--;
  }
}

static customer *add_customer(uint32_t id) {
  customer *c = wl_malloc(sizeof *c);
  *c = (customer){id, NULL};
  rb_put(&customers, id, c);
  ncustomers++;
  return c;
}

static void reserve(customer *c, int type, uint32_t id) {
  reservation *r = rb_find(tables[type], id);
  if (!r || r->free == 0) return;
  info **p = &c->list;
  while (*p && ((*p)->type < (uint32_t)type || ((*p)->type == (uint32_t)type && (*p)->id < id))) p = &(*p)->next;
  if (*p && (*p)->type == (uint32_t)type && (*p)->id == id) return; /* holds one already */
  info *e = wl_malloc(sizeof *e);
  *e = (info){(uint32_t)type, id, r->price, *p};
  *p = e;
  r->free--;
  r->used++;
}

static uint64_t delete_customer(uint32_t id) {
  customer *c = rb_find(customers, id);
  if (!c) return 0;
  uint64_t bill = 0;
  while (c->list) {
    info *e = c->list;
    reservation *r = rb_find(tables[e->type], e->id);
    r->free++;
    r->used--;
    bill += e->price;
    c->list = e->next;
    wl_free(e);
  }
  rb_remove(&customers, id);
  wl_free(c);
  ncustomers--;
  return bill;
}

static uint64_t checksum_tree(uint64_t h, const rb *t, int type) {
  if (!t) return h;
  h = checksum_tree(h, t->left, type);
  h = mix64(h, t->key);
  if (type < NTYPES) {
    const reservation *r = t->val;
    h = mix64(mix64(h, r->used), mix64(r->total, r->price));
  } else
    for (const info *e = ((const customer *)t->val)->list; e; e = e->next) h = mix64(h, e->type << 24 ^ e->id ^ (uint64_t)e->price << 32);
  return checksum_tree(h, t->right, type);
}

static void free_tree(rb *t, int type) {
  if (!t) return;
  free_tree(t->left, type);
  free_tree(t->right, type);
  if (type == NTYPES)
    for (info *e = ((customer *)t->val)->list, *next; e; e = next) {
      next = e->next;
      wl_free(e);
    }
  wl_free(t->val);
  wl_free(t);
}

int main(int argc, char **argv) {
  uint32_t txns;
  uint64_t seed;
  wl_args(argc, argv, "vacation", 2000, 1, &txns, &seed);
  rng_t r = {seed};
  uint32_t relations = txns / 4 + 16, range = relations * 9 / 10 + 1;

  /* STAMP populates every table with ids 1..relations in random order. */
  uint32_t *ids = wl_malloc(relations * sizeof *ids);
  for (uint32_t i = 0; i < relations; i++) ids[i] = i + 1;
  for (int t = 0; t <= NTYPES; t++) {
    for (uint32_t i = relations - 1; i > 0; i--) {
      uint32_t j = rng_below(&r, i + 1), x = ids[i];
      ids[i] = ids[j];
      ids[j] = x;
    }
    for (uint32_t i = 0; i < relations; i++) {
      if (t == NTYPES) {
        add_customer(ids[i]);
        continue;
      }
      uint32_t num = (rng_below(&r, 5) + 1) * 100; /* separate statements: argument order is unspecified */
      add_item(t, ids[i], num, rng_below(&r, 5) * 10 + 50);
    }
  }
  wl_free(ids);

  uint64_t bills = 0, made = 0, deleted = 0, updated = 0;
  for (uint32_t n = 0; n < txns; n++) {
    uint32_t dice = rng_below(&r, 100);
    if (dice < 80) {
      uint32_t best[NTYPES] = {0}, best_price[NTYPES] = {0}, cid = 1 + rng_below(&r, range);
      for (int q = 0, nq = 2 + (int)rng_below(&r, 4); q < nq; q++) {
        int type = (int)rng_below(&r, NTYPES);
        uint32_t id = 1 + rng_below(&r, range);
        reservation *res = rb_find(tables[type], id);
        if (res && res->free && res->price > best_price[type]) {
          best[type] = id;
          best_price[type] = res->price;
        }
      }
      customer *c = rb_find(customers, cid);
      if (!c && (best[CAR] || best[FLIGHT] || best[ROOM])) c = add_customer(cid);
      for (int t = 0; t < NTYPES; t++)
        if (best[t]) reserve(c, t, best[t]);
      made++;
    } else if (dice < 90) {
      bills += delete_customer(1 + rng_below(&r, range));
      deleted++;
    } else {
      for (int u = 0, nu = 1 + (int)rng_below(&r, 4); u < nu; u++) {
        int type = (int)rng_below(&r, NTYPES);
        uint32_t id = 1 + rng_below(&r, range);
        if (rng_below(&r, 2)) add_item(type, id, 100, rng_below(&r, 5) * 10 + 50);
        else retire_item(type, id);
      }
      updated++;
    }
  }

  uint64_t sum = mix64(CHECKSUM_INIT, bills);
  for (int t = 0; t < NTYPES; t++) sum = checksum_tree(sum, tables[t], t);
  sum = checksum_tree(sum, customers, NTYPES);
  char stats[200];
  snprintf(stats, sizeof stats, "reservations=%" PRIu64 " deletions=%" PRIu64 " updates=%" PRIu64 " customers=%" PRIu32
           " cars=%" PRIu32 " flights=%" PRIu32 " rooms=%" PRIu32, made, deleted, updated, ncustomers, ntables[CAR],
           ntables[FLIGHT], ntables[ROOM]);
  for (int t = 0; t < NTYPES; t++) free_tree(tables[t], t);
  free_tree(customers, NTYPES);
  wl_finish("vacation", txns, seed, sum, stats);
  return 0;
}
