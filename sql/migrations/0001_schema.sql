-- memload schema: the Aionis v0.1.0 memory schema, partitioned by scope.
--
-- Choice: memory_commits, memory_nodes, memory_edges and memory_outbox are PARTITION BY LIST (scope) with a DEFAULT
-- partition. Small scopes written through the API live in the default partition; a perf scope gets partitions of its
-- own (memload_partition_ensure_scope, or the seeder's load-then-attach path), so that
--   * its HNSW index holds only its own vectors: recall in one scope is never starved by vectors of another scope
--     (the Aionis server's shared index returned no seeds once another scope had a few hundred vectors);
--   * it can be bulk-loaded before its indexes exist, and purged by DROP in milliseconds.
-- Keys include scope (a partitioned table's unique keys must), so edges reference nodes by (scope, id): an edge can
-- never cross scopes.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TYPE memory_node_type AS ENUM ('event', 'entity', 'topic', 'rule', 'evidence', 'concept', 'procedure', 'self_model');
CREATE TYPE memory_edge_type AS ENUM ('part_of', 'related_to', 'derived_from');
CREATE TYPE memory_tier AS ENUM ('hot', 'warm', 'cold', 'archive');
CREATE TYPE memory_rule_state AS ENUM ('draft', 'shadow', 'active', 'disabled');
CREATE TYPE memory_embedding_status AS ENUM ('pending', 'ready', 'failed');
CREATE TYPE memory_lane AS ENUM ('private', 'shared');
CREATE TYPE memory_rule_scope AS ENUM ('global', 'team', 'agent');

CREATE OR REPLACE FUNCTION memload_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;

-- ---------------------------------------------------------------- commits
CREATE TABLE memory_commits (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  scope text NOT NULL,
  parent_id uuid,
  input_sha256 text NOT NULL,
  diff_json jsonb NOT NULL DEFAULT '{}'::jsonb,
  actor text NOT NULL DEFAULT 'system',
  model_version text,
  prompt_version text,
  created_at timestamptz NOT NULL DEFAULT now(),
  commit_hash text NOT NULL,
  CONSTRAINT memory_commits_pkey PRIMARY KEY (scope, id),
  CONSTRAINT memory_commits_scope_hash_key UNIQUE (scope, commit_hash),
  CONSTRAINT memory_commits_parent_fk FOREIGN KEY (scope, parent_id) REFERENCES memory_commits (scope, id)
) PARTITION BY LIST (scope);
CREATE TABLE memory_commits_default PARTITION OF memory_commits DEFAULT;
CREATE INDEX memory_commits_scope_created_idx ON memory_commits (scope, created_at DESC);

-- ---------------------------------------------------------------- nodes
CREATE TABLE memory_nodes (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  scope text NOT NULL,
  type memory_node_type NOT NULL,
  tier memory_tier NOT NULL DEFAULT 'hot',
  title text,
  text_summary text,
  slots jsonb NOT NULL DEFAULT '{}'::jsonb,
  raw_ref text,
  evidence_ref text,
  embedding vector(1536),
  salience real NOT NULL DEFAULT 0.5 CHECK (salience >= 0 AND salience <= 1),
  importance real NOT NULL DEFAULT 0.5 CHECK (importance >= 0 AND importance <= 1),
  confidence real NOT NULL DEFAULT 0.5 CHECK (confidence >= 0 AND confidence <= 1),
  last_activated timestamptz,
  redaction_version integer NOT NULL DEFAULT 1,
  derivation_version integer NOT NULL DEFAULT 1,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  commit_id uuid NOT NULL,
  embedding_status memory_embedding_status NOT NULL DEFAULT 'ready',
  embedding_attempts integer NOT NULL DEFAULT 0,
  embedding_last_error text,
  embedding_last_attempt_at timestamptz,
  embedding_ready_at timestamptz,
  client_id text,
  embedding_model text,
  memory_lane memory_lane NOT NULL DEFAULT 'private',
  producer_agent_id text,
  owner_agent_id text,
  owner_team_id text,
  CONSTRAINT memory_nodes_pkey PRIMARY KEY (scope, id),
  CONSTRAINT memory_nodes_commit_fk FOREIGN KEY (scope, commit_id) REFERENCES memory_commits (scope, id),
  CONSTRAINT memory_nodes_private_rule_owner_ck
    CHECK (type <> 'rule' OR memory_lane <> 'private' OR owner_agent_id IS NOT NULL OR owner_team_id IS NOT NULL)
) PARTITION BY LIST (scope);
CREATE TABLE memory_nodes_default PARTITION OF memory_nodes DEFAULT;
CREATE TRIGGER memory_nodes_touch BEFORE UPDATE ON memory_nodes
  FOR EACH ROW EXECUTE FUNCTION memload_touch_updated_at();

CREATE INDEX memory_nodes_scope_type_created_idx ON memory_nodes (scope, type, created_at DESC);
CREATE INDEX memory_nodes_scope_tier_salience_idx ON memory_nodes (scope, tier, salience DESC);
CREATE INDEX memory_nodes_slots_gin_idx ON memory_nodes USING gin (slots);
CREATE INDEX memory_nodes_scope_embedding_status_idx ON memory_nodes (scope, embedding_status);
CREATE UNIQUE INDEX memory_nodes_scope_client_id_uidx ON memory_nodes (scope, client_id) WHERE client_id IS NOT NULL;
CREATE INDEX memory_nodes_scope_lane_owner_idx ON memory_nodes (scope, memory_lane, owner_agent_id, owner_team_id);

-- Vector indexes (HNSW, cosine, m=16, ef_construction=64, as an Aionis server).
-- The recall path uses the partial index of ready hot/warm vectors. The general index covers every other vector
-- (cold/archive tiers, not-yet-ready rows with a vector), so no vector is indexed twice: an HNSW build is the slow
-- part of seeding, and the Aionis server's overlapping pair of indexes doubled it for no query that needed both.
CREATE INDEX memory_nodes_embedding_ready_hot_warm_hnsw_idx ON memory_nodes
  USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)
  WHERE embedding IS NOT NULL AND embedding_status = 'ready' AND tier IN ('hot', 'warm');
CREATE INDEX memory_nodes_embedding_hnsw_idx ON memory_nodes
  USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)
  WHERE embedding IS NOT NULL AND NOT (embedding_status = 'ready' AND tier IN ('hot', 'warm'));

-- ---------------------------------------------------------------- edges
CREATE TABLE memory_edges (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  scope text NOT NULL,
  type memory_edge_type NOT NULL,
  src_id uuid NOT NULL,
  dst_id uuid NOT NULL,
  weight real NOT NULL DEFAULT 0.5 CHECK (weight >= 0 AND weight <= 1),
  confidence real NOT NULL DEFAULT 0.5 CHECK (confidence >= 0 AND confidence <= 1),
  decay_rate real NOT NULL DEFAULT 0.01 CHECK (decay_rate >= 0 AND decay_rate <= 1),
  last_activated timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  commit_id uuid NOT NULL,
  CONSTRAINT memory_edges_pkey PRIMARY KEY (scope, id),
  CONSTRAINT memory_edges_scope_type_src_dst_key UNIQUE (scope, type, src_id, dst_id),
  CONSTRAINT memory_edges_no_self_loop CHECK (src_id <> dst_id),
  CONSTRAINT memory_edges_src_fk FOREIGN KEY (scope, src_id) REFERENCES memory_nodes (scope, id) ON DELETE CASCADE,
  CONSTRAINT memory_edges_dst_fk FOREIGN KEY (scope, dst_id) REFERENCES memory_nodes (scope, id) ON DELETE CASCADE,
  CONSTRAINT memory_edges_commit_fk FOREIGN KEY (scope, commit_id) REFERENCES memory_commits (scope, id)
) PARTITION BY LIST (scope);
CREATE TABLE memory_edges_default PARTITION OF memory_edges DEFAULT;
CREATE INDEX memory_edges_scope_src_type_idx ON memory_edges (scope, src_id, type);
CREATE INDEX memory_edges_scope_dst_type_idx ON memory_edges (scope, dst_id, type);

-- ---------------------------------------------------------------- outbox
CREATE TABLE memory_outbox (
  id bigserial NOT NULL,
  scope text NOT NULL,
  commit_id uuid NOT NULL,
  event_type text NOT NULL,
  payload jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz,
  claimed_at timestamptz,
  attempts integer NOT NULL DEFAULT 0,
  last_error text,
  failed_at timestamptz,
  failed_reason text,
  job_key text NOT NULL,
  payload_sha256 text NOT NULL,
  CONSTRAINT memory_outbox_pkey PRIMARY KEY (scope, id),
  CONSTRAINT memory_outbox_scope_event_job_key UNIQUE (scope, event_type, job_key),
  CONSTRAINT memory_outbox_commit_fk FOREIGN KEY (scope, commit_id) REFERENCES memory_commits (scope, id)
    ON DELETE CASCADE
) PARTITION BY LIST (scope);
CREATE TABLE memory_outbox_default PARTITION OF memory_outbox DEFAULT;
CREATE INDEX memory_outbox_unpublished_idx ON memory_outbox (published_at) WHERE published_at IS NULL;
CREATE INDEX memory_outbox_unpublished_claimed_idx ON memory_outbox (claimed_at) WHERE published_at IS NULL;
CREATE INDEX memory_outbox_pending_scope_id_idx ON memory_outbox (scope, id)
  WHERE published_at IS NULL AND failed_at IS NULL;

-- ---------------------------------------------------------------- rules, feedback, audit (not partitioned)
CREATE TABLE memory_rule_defs (
  scope text NOT NULL,
  rule_node_id uuid NOT NULL,
  state memory_rule_state NOT NULL DEFAULT 'draft',
  rule_scope memory_rule_scope NOT NULL DEFAULT 'global',
  target_agent_id text,
  target_team_id text,
  if_json jsonb NOT NULL DEFAULT '{}'::jsonb,
  then_json jsonb NOT NULL DEFAULT '{}'::jsonb,
  exceptions_json jsonb NOT NULL DEFAULT '[]'::jsonb,
  positive_count integer NOT NULL DEFAULT 0,
  negative_count integer NOT NULL DEFAULT 0,
  commit_id uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT memory_rule_defs_pkey PRIMARY KEY (scope, rule_node_id),
  CONSTRAINT memory_rule_defs_node_fk FOREIGN KEY (scope, rule_node_id) REFERENCES memory_nodes (scope, id)
    ON DELETE CASCADE
);

CREATE TABLE memory_rule_feedback (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  scope text NOT NULL,
  rule_node_id uuid NOT NULL,
  run_id text,
  outcome text NOT NULL,
  note text,
  source text NOT NULL DEFAULT 'tools_feedback',
  commit_id uuid,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX memory_rule_feedback_scope_rule_idx ON memory_rule_feedback (scope, rule_node_id, created_at DESC);

CREATE TABLE memory_recall_audit (
  id bigserial PRIMARY KEY,
  scope text NOT NULL,
  endpoint text NOT NULL,
  consumer_agent_id text,
  consumer_team_id text,
  query_sha256 text NOT NULL,
  seed_count integer NOT NULL,
  node_count integer NOT NULL,
  edge_count integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX memory_recall_audit_scope_created_idx ON memory_recall_audit (scope, created_at DESC);

-- ---------------------------------------------------------------- per-scope partitions
-- Partition name of a scope in a table: <table>_p_<md5(scope)[:16]> (the Aionis server's naming).
CREATE OR REPLACE FUNCTION memload_partition_name(tbl text, scope_key text) RETURNS text
  LANGUAGE sql IMMUTABLE AS $$ SELECT tbl || '_p_' || substr(md5(scope_key), 1, 16) $$;

-- The scope's own partitions (empty ones), in FK order. Fails if the default partition still holds rows of the
-- scope: purge the scope first (PostgreSQL refuses to attach a partition whose rows sit in the default one).
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
      created := created + 1;
    END IF;
  END LOOP;
  RETURN created;
END $$;

-- Does the scope have partitions of its own?
CREATE OR REPLACE FUNCTION memload_partition_scope_exists(scope_key text) RETURNS boolean
  LANGUAGE sql STABLE AS $$
  SELECT to_regclass(memload_partition_name('memory_nodes', scope_key)) IS NOT NULL
$$;
