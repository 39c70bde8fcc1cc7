-- The ready hot/warm HNSW index (the recall path's) moves from the partitioned parent to each partition, so a seeded
-- scope can carry it in the precision it was seeded with (float32 `vector`, or `halfvec`: half the graph, a faster
-- build). A parent index would force its float32 definition onto every partition attached to it.
-- Every existing partition gets the float32 index back (this rebuilds the HNSW graph of existing scopes: reseeding a
-- large scope is faster). New partitions get it from memload_partition_ensure_scope; the seeder builds its own.
-- The general index (every other vector) stays on the parent: it holds no row of a seeded scope.

DROP INDEX IF EXISTS memory_nodes_embedding_ready_hot_warm_hnsw_idx;

CREATE OR REPLACE FUNCTION memload_ready_hnsw_index(part text, prec text DEFAULT 'vector') RETURNS void
  LANGUAGE plpgsql AS $$
BEGIN
  IF prec NOT IN ('vector', 'halfvec') THEN
    RAISE EXCEPTION 'precision must be vector or halfvec, got %', prec;
  END IF;
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I USING hnsw (%s) WITH (m = 16, ef_construction = 64)'
                 ' WHERE embedding IS NOT NULL AND embedding_status = ''ready'' AND tier IN (''hot'', ''warm'')',
                 left(part, 43) || '_ready_hot_warm_hnsw', part,
                 CASE prec WHEN 'vector' THEN 'embedding vector_cosine_ops'
                           ELSE '(embedding::halfvec(1536)) halfvec_cosine_ops' END);
END $$;

DO $$
DECLARE
  part text;
BEGIN
  FOR part IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'memory_nodes'::regclass ORDER BY 1 LOOP
    PERFORM memload_ready_hnsw_index(part);
  END LOOP;
END $$;

CREATE OR REPLACE FUNCTION memload_partition_ensure_scope(scope_key text) RETURNS integer
  LANGUAGE plpgsql AS $$
DECLARE
  tbl text;
  created integer := 0;
BEGIN
  FOREACH tbl IN ARRAY ARRAY['memory_commits', 'memory_nodes', 'memory_edges', 'memory_outbox'] LOOP
    IF to_regclass(memload_partition_name(tbl, scope_key)) IS NULL THEN
      EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES IN (%L)',
                     memload_partition_name(tbl, scope_key), tbl, scope_key);
      IF tbl = 'memory_nodes' THEN
        PERFORM memload_ready_hnsw_index(memload_partition_name(tbl, scope_key));
      END IF;
      created := created + 1;
    END IF;
  END LOOP;
  RETURN created;
END $$;
