"""Bringing another shop across: ``manage.py import_from dujiaoka|acg-faka``.

Readers (``sqldump``: a dump file; ``mysql``: a live database) give rows;
source adapters (``dujiaoka``, ``acgfaka``) turn them into the records of
``records``; the writers (``catalogue``, ``history``, ``history_kinds``,
``stock``) bring those in through the shop's own services, each product with
its kind (unique, reusable, manual) and its variants (acg-faka's 种类 and
SKU options, read by ``acgfaka_config``); ``run`` puts the steps in order and
``report`` says what happened.
"""
