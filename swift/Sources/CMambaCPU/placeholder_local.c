/* placeholder so CMambaCPU builds in the compat worktree; not committed */ int cmambacpu_placeholder_local;
