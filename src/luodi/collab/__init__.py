"""Model collaboration (模型合作): composites of a domain model and a general model.

- `composite`: the versioned artifact (`luodi models composite create`), its config, loading
  and the per-request decision (route by a trained router, or cascade with fallback checks);
- `router`: embedding (kNN cosine) and keyword (log-odds) routers with a held-out threshold;
- `cascade`: the retrieval and refusal-marker checks a cascade falls back on;
- `general`: the built-in out-of-domain prompts a router is trained against;
- `target`: a composite as an eval target.
Serving lives in luodi.serve.backends.composite (engine "composite").
"""
