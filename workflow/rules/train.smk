# One time-boxed training segment per job; segment N+1 exists only if segment N was unfinished.


checkpoint segment:
    input:
        previous_segment,
    output:
        "runs/{exp}/{run}/status/seg-{n}.json",
    log:
        "runs/{exp}/{run}/logs/seg-{n}.log",
    conda:
        "../envs/batcher.yaml"
    threads: lambda wildcards: _experiment(wildcards).cpus
    resources:
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
