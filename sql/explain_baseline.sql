-- Planner baseline of memload's reference recall queries (the Aionis kit's planner step), for psql users.
-- It explains memload's own SQL, not a target server's: for that, run the target's own script, e.g.
--   memload explain --sql path/to/target/explain_baseline.sql --scope perf
--
--   psql "$DATABASE_URL" -v scope=perf -v lim=30 -f sql/explain_baseline.sql
--   psql "$DATABASE_URL" -v scope=perf -v lim=30 -v force_index=1 -f sql/explain_baseline.sql
--
-- Optional: -v tenant_id=T (scope key tenant:T::scope:S unless T is the default tenant: -v default_tenant_id, else
-- $MEMORY_TENANT_ID, else `default`), -v plan_cache_mode=auto|force_custom_plan|force_generic_plan, and the API's
-- per-connection knobs -v ef_search / iterative_scan / max_scan_tuples (else $HNSW_EF_SEARCH, $HNSW_ITERATIVE_SCAN,
-- $HNSW_MAX_SCAN_TUPLES, else 100 / relaxed_order / 20000, the defaults of memload/config.py).
--
-- It picks a READY hot/warm vector of the scope as the query (and exits 0 with a notice when there is none), then
-- prints EXPLAIN (ANALYZE, BUFFERS) of
--   stage 1: the API's ANN query (memory_api.recall_sql.STAGE1_SQL), oversampled to max(lim, min(1000, 5*lim));
--   stage 2: the API's 2-hop edge query (memory_api.recall_sql.STAGE2_HOP2_SQL) on stage 1's seeds, with the
--            default budgets (hop1 = hop2 = 500, edges = 500);
-- in the format of `memload explain --out` (explain_<scale>.txt). The PREPAREd statements below are the API's
-- statements with $n placeholders; tests/test_explain.py fails if they drift apart, and `python -m scripts.explain_runner`
-- rewrites them from memory_api/recall_sql.py.
--
-- Differences from the Aionis kit's script, on purpose:
--   * plan_cache_mode defaults to `auto` after warm-up executions, not force_generic_plan. The API's connections run
--     custom plans (PostgreSQL keeps them because they are cheaper); a generic plan of this statement guesses
--     LIMIT = 10% of the rows and picks Seq Scan + Sort (measured on 10^4 vectors: 69 ms instead of 5.5 ms with
--     HNSW), so it would describe a query the API never runs. The long vector literal of a custom plan is shortened
--     to '[…]' so the output stays readable, which is what the Aionis kit used force_generic_plan for.
--   * -v force_index=0 really means "not forced" (the Aionis kit only tests that the variable exists).
-- `memload explain` runs the same and also fails when stage 1 misses the HNSW index on a large-enough scope, or
-- stage 2 reads every edge of a scope larger than its edge budget.

\set ON_ERROR_STOP on
\set QUIET on
\pset pager off

\if :{?scope}
\else
  \set scope perf
\endif
\if :{?lim}
\else
  \set lim 30
\endif
\if :{?tenant_id}
\else
  \set tenant_id default
\endif
\if :{?default_tenant_id}
\else
  \set default_tenant_id default
  \getenv default_tenant_id MEMORY_TENANT_ID
\endif
\if :{?plan_cache_mode}
\else
  \set plan_cache_mode auto
\endif
\if :{?ef_search}
\else
  \set ef_search 100
  \getenv ef_search HNSW_EF_SEARCH
\endif
\if :{?iterative_scan}
\else
  \set iterative_scan relaxed_order
  \getenv iterative_scan HNSW_ITERATIVE_SCAN
\endif
\if :{?max_scan_tuples}
\else
  \set max_scan_tuples 20000
  \getenv max_scan_tuples HNSW_MAX_SCAN_TUPLES
\endif

SELECT :'lim' ~ '^[0-9]{1,9}$' AS lim_is_int \gset
\if :lim_is_int
  SELECT :'lim'::int BETWEEN 1 AND 200 AS lim_ok \gset
\else
  \set lim_ok false
\endif
\if :lim_ok
\else
  DO $$ BEGIN RAISE EXCEPTION 'explain_baseline.sql: -v lim must be an integer in [1, 200]'; END $$;
\endif
SELECT greatest(:'lim'::int, least(1000, 5 * :'lim'::int)) AS oversample,
       CASE WHEN :'tenant_id' = :'default_tenant_id' THEN :'scope'
            ELSE 'tenant:' || :'tenant_id' || '::scope:' || :'scope' END AS scope_key,
       CASE WHEN :'plan_cache_mode' = 'auto' THEN 6 ELSE 0 END AS warmup
\gset

-- The API's per-connection knobs (memory_api/db.py) and this run's planner switches.
SELECT set_config('hnsw.ef_search', :'ef_search', false) AS _ef,
       set_config('hnsw.iterative_scan', :'iterative_scan', false) AS _it,
       set_config('hnsw.max_scan_tuples', :'max_scan_tuples', false) AS _mst,
       set_config('plan_cache_mode', :'plan_cache_mode', false) AS _pcm
\gset
\if :{?force_index}
  \if :force_index
    SET enable_seqscan = off;
    SET enable_bitmapscan = off;
  \endif
\endif

-- The query vector: a READY hot/warm vector of the scope (NULL when there is none, which leaves :qvec unset).
SELECT (SELECT embedding::text FROM memory_nodes
         WHERE scope = :'scope_key' AND tier IN ('hot', 'warm') AND embedding_status = 'ready'
           AND embedding IS NOT NULL
         ORDER BY id LIMIT 1) AS qvec,
       (SELECT count(*) FROM memory_nodes
         WHERE scope = :'scope_key' AND tier IN ('hot', 'warm') AND embedding_status = 'ready'
           AND embedding IS NOT NULL) AS ready_vectors,
       current_setting('server_version') AS server_version,
       (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector_version,
       current_setting('enable_seqscan') AS enable_seqscan,
       current_setting('enable_bitmapscan') AS enable_bitmapscan
\gset

\echo '-- memload explain: memload reference SQL (not the target''s own queries)'
\echo -- scope: :scope tenant_id=:tenant_id scope_key=:scope_key lim=:lim oversample=:oversample
\echo -- settings: plan_cache_mode=:plan_cache_mode hnsw.ef_search=:ef_search hnsw.iterative_scan=:iterative_scan hnsw.max_scan_tuples=:max_scan_tuples enable_seqscan=:enable_seqscan enable_bitmapscan=:enable_bitmapscan
\echo -- server: PostgreSQL :server_version, pgvector :pgvector_version
\echo -- ready hot/warm vectors: :ready_vectors

\if :{?qvec}
\else
  \echo -- notice: no READY hot/warm embedding in scope :scope_key; nothing to explain.
  \quit
\endif

-- EXPLAIN of a prepared statement, run `warmup` times first (plan_cache_mode=auto: PostgreSQL's plan cache picks
-- between custom and generic plans after five executions, as on a warmed API connection). Long vector literals of
-- custom plans are shortened to '[…]'.
CREATE FUNCTION pg_temp.memload_explain(stmt text, warmup int) RETURNS SETOF text LANGUAGE plpgsql AS $fn$
DECLARE
  line text;
BEGIN
  FOR i IN 1..warmup LOOP
    EXECUTE stmt;
  END LOOP;
  FOR line IN EXECUTE 'EXPLAIN (ANALYZE, BUFFERS) ' || stmt LOOP
    RETURN NEXT regexp_replace(line, '''\[[-0-9.e,+ ]{200,}\]''', '''[…]''', 'g');
  END LOOP;
END
$fn$;

-- memory_api.recall_sql.STAGE1_SQL; $1 q, $2 scope, $3 agent, $4 team, $5 oversample, $6 limit
PREPARE memload_stage1 AS
WITH knn AS MATERIALIZED (
  SELECT
    n.id, n.type, n.title, n.text_summary, n.tier, n.salience, n.confidence,
    n.slots->>'topic_state' AS topic_state,
    (n.embedding <=> $1::vector(1536)) AS distance
  FROM memory_nodes n
  WHERE n.scope = $2
    AND n.tier IN ('hot', 'warm')
    AND n.embedding IS NOT NULL
    AND n.embedding_status = 'ready'
        AND (
          $3::text IS NULL
          OR n.memory_lane = 'shared'::memory_lane
          OR (n.memory_lane = 'private'::memory_lane AND n.owner_agent_id = $3::text)
          OR ($4::text IS NOT NULL AND n.memory_lane = 'private'::memory_lane
              AND n.owner_team_id = $4::text)
        )
  ORDER BY n.embedding <=> $1::vector(1536)
  LIMIT $5
)
SELECT
  k.id::text AS id,
  k.type::text AS type,
  k.title,
  k.text_summary,
  k.tier::text AS tier,
  k.salience,
  k.confidence,
  1.0 - k.distance AS similarity
FROM knn k
WHERE k.type IN ('event', 'topic', 'concept', 'entity', 'rule')
  AND (k.type <> 'topic' OR COALESCE(k.topic_state, 'active') = 'active')
  AND (
    k.type <> 'rule'
    OR EXISTS (
      SELECT 1 FROM memory_rule_defs d
      WHERE d.scope = $2 AND d.rule_node_id = k.id AND d.state IN ('shadow', 'active')
    )
  )
ORDER BY k.distance ASC, k.id
LIMIT $6;

-- memory_api.recall_sql.STAGE2_HOP2_SQL; $1 seed_ids, $2 scope, $3 min_w, $4 min_c, $5 hop1_budget,
-- $6 hop2_budget, $7 edge_budget
PREPARE memload_stage2 AS
WITH seed AS (SELECT unnest($1::uuid[]) AS id),
hop1 AS (
    (
      SELECT e.id, e.type, e.src_id, e.dst_id, e.weight, e.confidence, e.commit_id
      FROM memory_edges e
      JOIN seed s ON s.id = e.src_id
      WHERE e.scope = $2
        AND COALESCE(e.weight, 1) >= $3
        AND COALESCE(e.confidence, 1) >= $4
      ORDER BY e.weight DESC, e.confidence DESC
      LIMIT $5
    )
    UNION
    (
      SELECT e.id, e.type, e.src_id, e.dst_id, e.weight, e.confidence, e.commit_id
      FROM memory_edges e
      JOIN seed s ON s.id = e.dst_id
      WHERE e.scope = $2
        AND COALESCE(e.weight, 1) >= $3
        AND COALESCE(e.confidence, 1) >= $4
      ORDER BY e.weight DESC, e.confidence DESC
      LIMIT $5
    )
),
nodes AS (
  SELECT src_id AS id FROM hop1 UNION SELECT dst_id AS id FROM hop1 UNION SELECT id FROM seed
),
hop2 AS (
    (
      SELECT e.id, e.type, e.src_id, e.dst_id, e.weight, e.confidence, e.commit_id
      FROM memory_edges e
      JOIN nodes s ON s.id = e.src_id
      WHERE e.scope = $2
        AND COALESCE(e.weight, 1) >= $3
        AND COALESCE(e.confidence, 1) >= $4
      ORDER BY e.weight DESC, e.confidence DESC
      LIMIT $6
    )
    UNION
    (
      SELECT e.id, e.type, e.src_id, e.dst_id, e.weight, e.confidence, e.commit_id
      FROM memory_edges e
      JOIN nodes s ON s.id = e.dst_id
      WHERE e.scope = $2
        AND COALESCE(e.weight, 1) >= $3
        AND COALESCE(e.confidence, 1) >= $4
      ORDER BY e.weight DESC, e.confidence DESC
      LIMIT $6
    )
)
SELECT id::text, type::text, src_id::text, dst_id::text, weight, confidence, commit_id::text
FROM hop2
ORDER BY weight DESC, confidence DESC, id
LIMIT $7;

\echo
\echo -- stage1: ANN seeds, LIMIT :oversample -> :lim (memory_api.recall_sql.STAGE1_SQL)
SELECT line AS "QUERY PLAN"
FROM pg_temp.memload_explain(
  format('EXECUTE memload_stage1(%L, %L, NULL, NULL, %s, %s)', :'qvec', :'scope_key', :oversample, :lim),
  :warmup) AS line;

-- Stage 2 runs on the seeds stage 1 returns.
CREATE TEMP TABLE memload_seeds AS EXECUTE memload_stage1(:'qvec', :'scope_key', NULL, NULL, :oversample, :lim);
SELECT coalesce(array_agg(id), '{}')::text AS seed_ids, count(*) AS seed_count FROM memload_seeds \gset

\echo
\echo -- stage2: 2-hop edges of :seed_count seeds, budgets hop1=500 hop2=500 edges=500 (memory_api.recall_sql.STAGE2_HOP2_SQL)
SELECT line AS "QUERY PLAN"
FROM pg_temp.memload_explain(
  format('EXECUTE memload_stage2(%L, %L, 0, 0, 500, 500, 500)', :'seed_ids', :'scope_key'),
  :warmup) AS line;
