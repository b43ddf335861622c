-- A small relational workload for sqlite3 under the native recorder: table and index builds,
-- inserts from a recursive CTE, updates in place, deletes, joins and an aggregate.
PRAGMA cache_size = 200;
CREATE TABLE account(id INTEGER PRIMARY KEY, owner TEXT, balance INTEGER, branch INTEGER);
CREATE TABLE branch(id INTEGER PRIMARY KEY, name TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)
  INSERT INTO branch SELECT i, 'branch-' || i FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 600)
  INSERT INTO account SELECT i, 'owner-' || (i * 7919 % 1000), (i * 104729) % 10000, 1 + i % 20 FROM n;
CREATE INDEX account_branch ON account(branch);
UPDATE account SET balance = balance + 100 WHERE id % 3 = 0;
UPDATE account SET owner = owner || '-vip' WHERE balance > 9000;
DELETE FROM account WHERE id % 17 = 0;
SELECT b.name, count(*), sum(a.balance) FROM account a JOIN branch b ON a.branch = b.id GROUP BY b.name ORDER BY 3 DESC LIMIT 5;
SELECT count(*) FROM account WHERE owner LIKE '%vip%';
