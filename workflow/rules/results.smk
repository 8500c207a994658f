# The end of each chain: a summary inside the run folder, published under results/.
# The summary's name carries the length, so raising an experiment's length asks for a new one,
# which walks the chain on from its last segment.


localrules:
    finalize,
    publish,


rule finalize:
    input:
        last_segment,
    output:
        "runs/{exp}/{run}/final-{length}.json",
    log:
        "runs/{exp}/{run}/logs/finalize-{length}.log",
    wildcard_constraints:
        length="[0-9]+",
    conda:
        "../envs/batcher.yaml"
    script:
        "../scripts/finalize.py"


rule publish:
    input:
        lambda wildcards: f"{run_dir(wildcards.exp)}/final-{EXPERIMENTS[wildcards.exp].length}.json",
    output:
        summary="results/{exp}/final.json",
        state="results/{exp}/final.pt",
    log:
        "results/{exp}/publish.log",
    conda:
        "../envs/batcher.yaml"
    script:
        "../scripts/publish.py"
