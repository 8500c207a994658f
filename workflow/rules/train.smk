# One time-boxed training segment per job; segment N+1 exists only if segment N was unfinished.
# The order comes from last_segment (common.smk), which asks for segment N+1 only after it has read
# segment N's status file. Segments have no input edge to each other on purpose: with one, Snakemake
# puts every finished segment of a chain into the DAG (and evaluates its params and resources) on
# each start; without it, a restart costs one status-file read per finished segment.


checkpoint segment:
    output:
        STATUS_PATTERN,
    log:
        LOG_PATTERN,
    conda:
        "../envs/batcher.yaml"
    threads: segment_threads
    resources:
        nodes=lambda wildcards: (
            _experiment(wildcards).nodes if _srun_tasks(wildcards) else None
        ),
        tasks=lambda wildcards: (
            _experiment(wildcards).ranks if _srun_tasks(wildcards) else None
        ),
        mpi=lambda wildcards: "srun" if _srun_tasks(wildcards) else None,
        runtime=runtime_minutes,
        mem_mb=lambda wildcards: _experiment(wildcards).mem_mb,
        gres=lambda wildcards: (
            f"gpu:{_experiment(wildcards).gpus}" if _experiment(wildcards).gpus else ""
        ),
        slurm_extra=slurm_extra,
    params:
        command=segment_command,
    shell:
        "{params.command} > {log} 2>&1"
