// neon_client.mjs ENDPOINT CONNSTRING — Neon's own driver (@neondatabase/serverless,
// from NODE_PATH) against weir's /sql, unchanged but for fetchEndpoint. Prints one
// JSON object of what came back; test_server_http.py checks it.
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { neon, neonConfig } = require("@neondatabase/serverless");

const [endpoint, conn] = process.argv.slice(2);
neonConfig.fetchEndpoint = endpoint;
const sql = neon(conn);
const out = {};
try {
  out.one = await sql`SELECT ${41}::int + 1 AS answer, ${"héllo"}::text AS greeting`;
  out.types = await sql`SELECT 9007199254740993::int8 AS big, 1.5::numeric AS num, true AS flag,
                        '{"a": [1, null]}'::jsonb AS doc, ARRAY[1, 2]::int4[] AS arr,
                        '2024-02-29'::date AS day, NULL::text AS nothing`;
  out.rows = (await sql`SELECT g FROM generate_series(1, 20000) g`).length;
  out.plain = await sql("SELECT $1::text AS s", ["plain call"]);
  const full = neon(conn, { fullResults: true });
  const r = await full`SELECT 1 AS x`;
  out.full = { command: r.command, rowCount: r.rowCount, fields: r.fields.map((f) => f.name) };
  out.tx = await sql.transaction(
    [sql`SELECT current_setting('transaction_isolation') AS iso`,
     sql`SELECT current_setting('transaction_read_only') AS ro`],
    { isolationLevel: "Serializable", readOnly: true });
  try {
    await sql`SELECT * FROM no_such_table_neon`;
    out.error = "none";
  } catch (e) {
    out.error = { message: e.message, code: e.code };
  }
  try {
    await sql.transaction([sql`CREATE TEMP TABLE neon_t (x int)`, sql`SELECT 1/0`]);
    out.txError = "none";
  } catch (e) {
    out.txError = { message: e.message, code: e.code };
  }
} catch (e) {
  out.fatal = String(e && e.stack ? e.stack : e);
}
console.log(JSON.stringify(out));
