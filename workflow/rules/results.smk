# The end of each chain: the finished run's summary and final checkpoint under results/.


localrules:
    finalize,


rule finalize:
    input:
        last_segment,
    output:
        summary="results/{exp}/final.json",
        checkpoint="results/{exp}/final.pt",
    script:
        "../scripts/finalize.py"
