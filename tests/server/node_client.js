// node_client.js — node-postgres (Debian's node-pg) through weir: SCRAM login,
// parameterized queries (extended protocol), a transaction, an error; then a
// pg.Pool of 8 connections running named queries (node-postgres prepares each
// name once per connection and then only binds it) concurrently, through
// however few server connections weir has.
const { Client, Pool } = require('pg');

async function named(pool) {
  const q = (i) => pool.query({ name: 'add' + (i % 3), text: 'select $1::int + ' + (i % 3) + ' as n',
                                values: [i] });
  const all = [];
  for (let i = 0; i < 400; i++) all.push(q(i).then((r) => {
    if (r.rows[0].n !== i + (i % 3)) throw new Error('named query ' + i + ' gave ' + r.rows[0].n);
  }));
  await Promise.all(all);
  const c = await pool.connect(); // a named query inside a transaction
  try {
    await c.query('BEGIN');
    const r = await c.query({ name: 'add1', text: 'select $1::int + 1 as n', values: [9] });
    if (r.rows[0].n !== 10) throw new Error('in a transaction: ' + r.rows[0].n);
    await c.query('COMMIT');
  } finally { c.release(); }
}

async function main() {
  const c = new Client({ host: '127.0.0.1', port: +process.env.WEIR_PORT, user: 'app',
                         password: 's3cret', database: 'appdb' });
  await c.connect();
  const r = await c.query('select $1::int + 1 as n, $2::text as s', [41, 'hi']);
  if (r.rows[0].n !== 42 || r.rows[0].s !== 'hi') throw new Error('bad row ' + JSON.stringify(r.rows));
  await c.query('BEGIN');
  await c.query('CREATE TEMP TABLE nt (x int)');
  await c.query('INSERT INTO nt SELECT generate_series(1, 100)');
  const s = await c.query('select sum(x)::int as s from nt');
  if (s.rows[0].s !== 5050) throw new Error('bad sum');
  await c.query('COMMIT');
  let failed = false;
  try { await c.query('select 1/0'); } catch (e) { failed = e.code === '22012'; }
  if (!failed) throw new Error('expected division_by_zero');
  const again = await c.query('select 7 as x');
  if (again.rows[0].x !== 7) throw new Error('no recovery after error');
  await c.end();
  const pool = new Pool({ host: '127.0.0.1', port: +process.env.WEIR_PORT, user: 'app',
                          password: 's3cret', database: 'appdb', max: 8 });
  await named(pool);
  await pool.end();
  console.log('node-postgres ok');
}
main().catch((e) => { console.error(e); process.exit(1); });
