"""The console's interface text: Chinese by default, English on request (``ql_lang`` cookie)."""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("zh", "en")

TEXT: dict[str, tuple[str, str]] = {
    "title": ("清朗 审核台", "qinglang review console"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出", "Sign out"),
    "name": ("用户名", "Name"),
    "password": ("密码", "Password"),
    "bad_sign_in": ("用户名或密码错误", "Wrong name or password"),
    "too_many": (
        "登录失败次数过多,请 {minutes} 分钟后再试",
        "Too many failed sign-ins: try again in {minutes} min",
    ),
    "storage_down": (
        "数据库暂时无法访问,请稍后再试",
        "The database cannot be reached; try again shortly",
    ),
    "queue": ("审核队列", "Queue"),
    "appeals": ("申诉", "Appeals"),
    "reports": ("举报", "Reports"),
    "bank": ("谣言库", "Rumour bank"),
    "dashboard": ("看板", "Dashboard"),
    "head": ("风险类别", "Head"),
    "status": ("状态", "Status"),
    "assignee": ("认领人", "Assignee"),
    "any": ("全部", "any"),
    "filter": ("筛选", "Filter"),
    "next_page": ("下一页", "Next page"),
    "next_item": ("下一条", "Next item"),
    "no_credit_record": (
        "尚无信用记录:未受过处置,信用分按初始值 {credit} 计",
        "No credit record yet: never penalised, so at the initial {credit}",
    ),
    "kind": ("来源", "Kind"),
    "priority": ("优先级", "Priority"),
    "score": ("分数", "Score"),
    "account": ("账号", "Account"),
    "cluster_size": ("聚类规模", "Cluster size"),
    "reports_n": ("举报数", "Reports"),
    "age": ("等待", "Age"),
    "deadline": ("期限", "Deadline"),
    "overdue": ("已超期", "overdue"),
    "empty": ("没有条目", "Nothing here"),
    "item": ("条目", "Item"),
    "post": ("帖子", "Post"),
    "post_text": ("正文", "Post text"),
    "pending": ("证据片段计算中", "evidence spans still being computed"),
    "pending_elsewhere": (
        "证据片段待由评分时的模型计算，本服务未运行该模型：",
        "evidence spans wait for the model that scored it, which this server does not run:",
    ),
    "no_evidence": (
        "证据片段计算失败，详见服务日志",
        "the evidence search failed: see the service log",
    ),
    "heads": ("各类分数与阈值", "Scores and thresholds"),
    "review_at": ("审核阈值", "review at"),
    "block_at": ("拦截阈值", "block at"),
    "flagged": ("触发", "flagged"),
    "reasons": ("理由与依据", "Reasons and the articles they rest on"),
    "timeline": ("聚类时间线", "Cluster timeline"),
    "compare": ("更早的帖子与本帖对照", "The earlier post beside this one"),
    "earliest": ("最早来源", "earliest source"),
    "credit": ("信用分", "Credit"),
    "level": ("等级", "Level"),
    "dispositions": ("处置", "Dispositions"),
    "history": ("记录", "History"),
    "claim": ("认领", "Claim"),
    "confirm": ("确认违规", "Confirm"),
    "dismiss": ("驳回", "Dismiss"),
    "escalate": ("上报", "Escalate"),
    "category": ("违规类别", "Category"),
    "basis": ("依据条款", "Basis (article)"),
    "note": ("备注", "Note"),
    "shortcuts": (
        "快捷键:c 认领,y 确认,d 驳回,e 上报,j 下一条,q 队列",
        "Keys: c claim, y confirm, d dismiss, e escalate, j next item, q queue",
    ),
    "file_appeal": ("登记申诉", "File an appeal"),
    "item_id": ("条目编号", "Item id"),
    "reason": ("理由", "Reason"),
    "uphold": ("支持申诉", "Uphold"),
    "reject": ("驳回申诉", "Reject"),
    "filed_at": ("提交时间", "Filed"),
    "resolved": ("处理结果", "Outcome"),
    "overdue_n": ("超期未处理", "pending past deadline"),
    "pending_n": ("待处理", "pending"),
    "text": ("内容", "Text"),
    "notice": ("辟谣说明", "Debunk notice"),
    "add": ("加入", "Add"),
    "remove": ("移除", "Remove"),
    "by": ("操作人", "By"),
    "created": ("时间", "Created"),
    "flagged_per_day": ("各类别每日入队量(14 天)", "Flagged per head per day (14 days)"),
    "queue_age": ("待审条目按等待时长", "Open items by age"),
    "per_reviewer": ("各审核员决定数(7 天)", "Decisions per reviewer (7 days)"),
    "appeal_outcomes": ("申诉结果", "Appeal outcomes"),
    "score_dist": ("近一天分数分布与审核阈值", "Last day's scores against the review threshold"),
    "forbidden": ("无权访问此页面", "You may not open this page"),
    "language": ("English", "中文"),
    "decided": ("已处理", "Decided"),
    "not_found": ("没有这个条目", "No such item"),
}


def translator(language: str) -> Callable[[str], str]:
    index = 1 if language == "en" else 0

    def t(key: str) -> str:
        return TEXT[key][index]

    return t
