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
        nodes=_task_resource("nodes"),
        tasks=_task_resource("tasks"),
        tasks_per_node=_task_resource("tasks_per_node"),
        tasks_per_gpu=_task_resource("tasks_per_gpu"),
        mpi=_task_resource("mpi"),
        node_range=_task_resource("node_range"),
        narrow_after_s=segment_narrow_after,
        presubmit_key=segment_presubmit_key,
        runtime=runtime_minutes,
        mem_mb=lambda wildcards: _experiment(wildcards).mem_mb,
        gres=lambda wildcards: (
            f"gpu:{_experiment(wildcards).gpus}" if _experiment(wildcards).gpus else ""
        ),
        constraint=segment_constraint,
        slurm_extra=slurm_extra,
    params:
        command=segment_command,
    shell:
        "{params.command} > {log} 2>&1"
