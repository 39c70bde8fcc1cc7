-- Seed a larger dataset (in an isolated scope) for performance baselines: the Aionis kit's legacy SQL seed.
--
-- Usage (against the embedded server too: DATABASE_URL=$(memload db url)):
--   psql "$DATABASE_URL" -v src_scope=default -v scope=perf -v n=50000 -f sql/seed_perf_dataset.sql
--
-- Writes N event nodes ('perf seed event #i', hot, READY, embedding_model 'perf:seed') into :scope, all carrying one
-- READY hot vector copied from :src_scope (every distance ties, as in the Aionis kit), plus one commit chained to the
-- scope's newest commit. No topics, no edges. Variables are scope keys (for a non-default tenant pass
-- 'tenant:<t>::scope:<s>'). `memload seed` is the fast, commit-tracked, clustered-vector path; this is the legacy one.
--
-- One transaction: on any error (ON_ERROR_STOP) nothing is written. On memload's partitioned schema a scope with no
-- rows yet first gets partitions of its own (memload_partition_ensure_scope), so its vectors sit in their own HNSW
-- index and a later purge drops them; a scope already written through the API keeps its rows in the default
-- partition. On a schema without memload's partition functions (an Aionis server's shared plain tables) the rows go
-- into the live tables, whose indexes stay.

\set ON_ERROR_STOP on

\if :{?src_scope}
\else
  \set src_scope 'default'
\endif

\if :{?scope}
\else
  \set scope 'perf'
\endif

\if :{?n}
\else
  \set n 50000
\endif

BEGIN;

-- The source vector must exist (fail loudly, exit code 3, nothing written).
SELECT set_config('memload.seed_src_scope', :'src_scope', true) AS seed_src_scope_set
\gset
DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM memory_nodes
    WHERE scope = current_setting('memload.seed_src_scope')
      AND tier = 'hot' AND embedding_status = 'ready' AND embedding IS NOT NULL
  ) THEN
    RAISE EXCEPTION 'No READY hot embedding found in src_scope=%; cannot seed perf dataset',
      current_setting('memload.seed_src_scope');
  END IF;
END $$;

-- memload's own layout? (its partition functions exist)
SELECT to_regproc('memload_partition_ensure_scope') IS NOT NULL AS memload_layout
\gset

-- Own partitions when the scope has no rows anywhere yet (memload's layout only).
\if :memload_layout
  SELECT NOT EXISTS (SELECT 1 FROM memory_commits WHERE scope = :'scope')
     AND NOT EXISTS (SELECT 1 FROM memory_nodes WHERE scope = :'scope')
     AND NOT EXISTS (SELECT 1 FROM memory_edges WHERE scope = :'scope')
     AND NOT EXISTS (SELECT 1 FROM memory_outbox WHERE scope = :'scope') AS scope_is_new
  \gset
  \if :scope_is_new
    SELECT memload_partition_ensure_scope(:'scope') AS partitions_created;
  \endif
\endif

-- One commit, chained to the scope's newest commit.
WITH parent AS (
  SELECT id, commit_hash FROM memory_commits WHERE scope = :'scope' ORDER BY created_at DESC LIMIT 1
), ins AS (
  INSERT INTO memory_commits (id, scope, parent_id, input_sha256, diff_json, actor, model_version, prompt_version,
                              commit_hash)
  SELECT
    gen_random_uuid(),
    :'scope',
    (SELECT id FROM parent),
    encode(sha256(convert_to('seed_perf_dataset:' || :'scope' || ':' || :'src_scope' || ':' || (:'n')::int::text
                             || ':' || now()::text, 'UTF8')), 'hex'),
    jsonb_build_object('kind', 'seed_perf_dataset', 'n', (:'n')::int, 'src_scope', :'src_scope'),
    'job:seed_perf_dataset',
    NULL,
    NULL,
    encode(sha256(convert_to(coalesce((SELECT commit_hash FROM parent), '') || ':seed_perf_dataset:commit:'
                             || :'scope' || ':' || now()::text, 'UTF8')), 'hex')
  RETURNING id
)
SELECT id AS commit_id FROM ins
\gset

-- N event nodes sharing the copied vector (READY, model set).
INSERT INTO memory_nodes (id, scope, type, tier, title, text_summary, slots, embedding, embedding_status,
                          embedding_ready_at, embedding_model, commit_id)
SELECT
  gen_random_uuid(),
  :'scope',
  'event'::memory_node_type,
  'hot'::memory_tier,
  NULL,
  'perf seed event #' || gs.i::text,
  '{}'::jsonb,
  src.embedding,
  'ready'::memory_embedding_status,
  now(),
  'perf:seed',
  :'commit_id'::uuid
FROM generate_series(1, (:'n')::int) AS gs(i)
CROSS JOIN (
  SELECT embedding FROM memory_nodes
  WHERE scope = :'src_scope' AND tier = 'hot' AND embedding_status = 'ready' AND embedding IS NOT NULL
  ORDER BY created_at, id
  LIMIT 1
) AS src;

COMMIT;

-- Planner statistics for realistic EXPLAIN: the leaf holding the scope's nodes, and the parent's own statistics
-- (memload's layout), or the shared table.
\if :memload_layout
  SELECT coalesce(
    (SELECT memload_partition_name('memory_nodes', :'scope') WHERE memload_partition_scope_exists(:'scope')),
    'memory_nodes_default') AS nodes_leaf
  \gset
  ANALYZE :"nodes_leaf";
  ANALYZE ONLY memory_nodes;
\else
  ANALYZE memory_nodes;
\endif
