# torch-batcher: every experiment in config.yaml trains to the end as a chain of time-boxed jobs.
# Run with a profile: snakemake --profile profiles/local   (or profiles/das5 on the cluster)


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/results.smk"


rule all:
    default_target: True
    input:
        expand(str(RESULT.summary), exp=EXPERIMENTS),
        expand(str(RESULT.curves), exp=EXPERIMENTS),
        expand(str(RESULT.timeline), exp=EXPERIMENTS),
        str(ResultsLayout.across("summary.png")),
