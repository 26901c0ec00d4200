"""The text of a moezoo model card: a Jinja template for `huggingface_hub.ModelCard.from_template`, and the
citations of the papers behind the architectures.

Every section is filled from the checkpoint, its ``results.json`` and what the zoo knows of its data; a
section with nothing to say is left out rather than filled with a placeholder.
"""

from __future__ import annotations

MODEL_CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_id }}

{{ model_summary }}

## Model details

{{ model_description }}

- **Model type:** {{ model_type }}
- **Paper:** {{ paper }}
- **Developed by:** the moezoo contributors, with moezoo {{ moezoo_version }}
- **Licence:** {{ license_text }}

## Uses

### Intended use

{{ intended_use }}

### Out-of-scope use

{{ out_of_scope_use }}

## How to use

{{ snippet_intro }}

```python
{{ get_started_code }}
```

### Fine-tuning

{{ fine_tuning }}

## Training data

{{ training_data }}

## Training procedure

{{ training_regime }}

### Compute

{{ compute }}
{% if learning_curve %}
### Learning curve

{{ learning_curve }}
{% endif %}
## Evaluation

{{ testing_data }} {{ testing_metrics }}

{{ results }}
{% if baselines %}
### Against the baselines

{{ baselines }}
{% endif %}
### Where it fails

{{ failures }}
{% if comparison %}
### Other zoo entries on the same data

{{ comparison }}
{% endif %}{% if model_examination %}
## Routing

{{ model_examination }}
{% endif %}
## Limitations

{{ limitations }}
{% if citation %}
## Citation

```bibtex
{{ citation }}
```
{% endif %}"""

_MMOE = """@inproceedings{ma2018mmoe,
  title = {Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts},
  author = {Ma, Jiaqi and Zhao, Zhe and Yi, Xinyang and Chen, Jilin and Hong, Lichan and Chi, Ed H.},
  booktitle = {Proceedings of the 24th ACM SIGKDD International Conference on Knowledge Discovery and Data Mining},
  year = {2018}
}"""
_PLE = """@inproceedings{tang2020ple,
  title = {Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL) Model for Personalized Recommendations},
  author = {Tang, Hongyan and Liu, Junning and Zhao, Ming and Gong, Xudong},
  booktitle = {Fourteenth ACM Conference on Recommender Systems (RecSys)},
  year = {2020}
}"""
_DSELECT_K = """@inproceedings{hazimeh2021dselectk,
  title = {DSelect-k: Differentiable Selection in the Mixture of Experts with Applications to Multi-Task Learning},
  author = {Hazimeh, Hussein and Zhao, Zhe and Chowdhery, Aakanksha and Sathiamoorthy, Maheswaran and Chen, Yihua and Mazumder, Rahul and Hong, Lichan and Chi, Ed H.},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year = {2021}
}"""
_LORA = """@inproceedings{hu2022lora,
  title = {LoRA: Low-Rank Adaptation of Large Language Models},
  author = {Hu, Edward J. and Shen, Yelong and Wallis, Phillip and Allen-Zhu, Zeyuan and Li, Yuanzhi and Wang, Shean and Wang, Lu and Chen, Weizhu},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = {2022}
}"""

#: BibTeX of the paper behind each architecture and adapter method (`config.architecture_name`).
CITATIONS = {
    "shared_bottom": """@article{caruana1997multitask,
  title = {Multitask Learning},
  author = {Caruana, Rich},
  journal = {Machine Learning},
  volume = {28},
  number = {1},
  pages = {41--75},
  year = {1997}
}""",
    "omoe": _MMOE,
    "mmoe": _MMOE,
    "cgc": _PLE,
    "ple": _PLE,
    "dselect_k": _DSELECT_K,
    "dselect_k_static": _DSELECT_K,
    "home": """@misc{wang2024home,
  title = {HoME: Hierarchy of Multi-Gate Experts for Multi-Task Learning at Kuaishou},
  author = {Wang, Xu and others},
  year = {2024},
  eprint = {2408.05430},
  archivePrefix = {arXiv}
}""",
    "m3vit": """@inproceedings{liang2022m3vit,
  title = {M$^3$ViT: Mixture-of-Experts Vision Transformer for Efficient Multi-task Learning with Model-Accelerator Co-design},
  author = {Liang, Hanxue and others},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year = {2022}
}""",
    "lora": _LORA,
    "align_lora": """@misc{liu2025aligndontdivide,
  title = {Align, Don't Divide: Revisiting the LoRA Architecture in Multi-Task Learning},
  author = {Liu, Jinda and others},
  year = {2025},
  note = {Code: https://github.com/jinda-liu/Align-LoRA}
}""",
    "multi_head_lora": """@inproceedings{tian2024hydralora,
  title = {HydraLoRA: An Asymmetric LoRA Architecture for Efficient Fine-Tuning},
  author = {Tian, Chunlin and Shi, Zhan and Guo, Zhijiang and Li, Li and Xu, Chengzhong},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year = {2024}
}""",
    "mhr": """@inproceedings{caccia2023mhr,
  title = {Multi-Head Adapter Routing for Cross-Task Generalization},
  author = {Caccia, Lucas and others},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year = {2023}
}""",
}

_TIES = """@inproceedings{yadav2023ties,
  title = {{TIES}-Merging: Resolving Interference When Merging Models},
  author = {Yadav, Prateek and Tam, Derek and Choshen, Leshem and Raffel, Colin and Bansal, Mohit},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year = {2023}
}"""
_DARE = """@inproceedings{yu2024dare,
  title = {Language Models are Super Mario: Absorbing Abilities from Homologous Models as a Free Lunch},
  author = {Yu, Le and Yu, Bowen and Yu, Haiyang and Huang, Fei and Li, Yongbin},
  booktitle = {International Conference on Machine Learning (ICML)},
  year = {2024}
}"""
_ISOTROPIC = """@inproceedings{marczak2025notask,
  title = {No Task Left Behind: Isotropic Model Merging with Common and Task-Specific Subspaces},
  author = {Marczak, Daniel and Magistri, Simone and Cygert, Sebastian and Twardowski, Bart{\\l}omiej and Bagdanov, Andrew D. and van de Weijer, Joost},
  booktitle = {International Conference on Machine Learning (ICML)},
  year = {2025}
}"""

#: BibTeX of the paper behind each merging method (`config.merge["method"]`), cited beside the architecture's.
MERGE_CITATIONS = {
    "task_arithmetic": """@inproceedings{ilharco2023taskarithmetic,
  title = {Editing Models with Task Arithmetic},
  author = {Ilharco, Gabriel and Ribeiro, Marco Tulio and Wortsman, Mitchell and Gururangan, Suchin and Schmidt, Ludwig and Hajishirzi, Hannaneh and Farhadi, Ali},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = {2023}
}""",
    "ties": _TIES,
    "dare_linear": _DARE,
    "dare_ties": _DARE + "\n\n" + _TIES,
    "iso_c": _ISOTROPIC,
    "iso_cts": _ISOTROPIC,
    "task_vector_experts": """@inproceedings{tang2024wemoe,
  title = {Merging Multi-Task Models via Weight-Ensembling Mixture of Experts},
  author = {Tang, Anke and Shen, Li and Luo, Yong and Yin, Nan and Zhang, Lefei and Tao, Dacheng},
  booktitle = {International Conference on Machine Learning (ICML)},
  year = {2024}
}""",
}
