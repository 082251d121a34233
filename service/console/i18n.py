"""The console's interface text: Chinese by default, English on request (``ql_lang`` cookie)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from jinja2 import pass_context
from jinja2.runtime import Context

from service.console.times import when
from service.policy.provisions import UNKNOWN
from service.review.refusals import RefusedError

Language = Literal["zh", "en"]

TEXT: dict[str, tuple[str, str]] = {
    "title": ("清朗 审核台", "qinglang review console"),
    "skip_to_main": ("跳到主要内容", "Skip to main content"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出", "Sign out"),
    "name": ("用户名", "Name"),
    "password": ("密码", "Password"),
    "bad_sign_in": ("用户名或密码错误", "Wrong name or password"),
    "session_ended": (
        "登录已失效,请重新登录",
        "Your session has ended: sign in again",
    ),
    "session_unsent": (
        "登录已失效,刚才提交的操作没有生效:请重新登录后再提交",
        "Your session has ended, and what you just sent was not done: sign in and send it again",
    ),
    "too_many": (
        "登录失败次数过多,请 {minutes} 分钟后再试",
        "Too many failed sign-ins: try again in {minutes} min",
    ),
    "storage_down": (
        "数据库暂时无法访问,请稍后再试",
        "The database cannot be reached; try again shortly",
    ),
    "storage_late": (
        "数据库未及时应答:此项操作可能仍会生效。请稍后重新打开页面查看,再决定是否重做",
        "The database did not answer in time, and the change may still be made: open the page "
        "again shortly to see whether it was before making it again",
    ),
    "index_away": (
        "共享近似重复索引暂时无法访问:此处不显示该簇的实时成员",
        "The shared near-duplicate index cannot be reached: the cluster's live members are not "
        "shown",
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
    "confirm_title": ("确认违规?", "Confirm the violation?"),
    "confirm_what": (
        "提交后将按策略扣减账号 {account} 的信用分,并可能对其施加处置;只有申诉成立才会撤销。",
        "Sending it deducts account {account}'s credit under the policy and may apply "
        "dispositions to it; only an upheld appeal undoes them.",
    ),
    "confirm_charges_nobody": (
        "该条目不指向任何账号:确认不扣减任何账号的信用分。",
        "The item names no account: confirming it charges nobody.",
    ),
    "confirm_send": ("确认并提交", "Confirm and send"),
    "cancel": ("取消", "Cancel"),
    "next_item": ("下一条", "Next item"),
    "post_unknown": (
        "服务从未存储此帖子:没有正文可读。",
        "The service never stored this post: there is no text to read.",
    ),
    "charges_nobody": (
        "举报未指明账号,确认违规不扣任何账号的信用分。",
        "The report names no account: confirming it charges nobody.",
    ),
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
    # the item decided before this one on the same key, by this one's kind
    # (``service.console.present.EARLIER_SAID``)
    "earlier_item": (
        "此前已有条目处理过同一事项,本条目审核此后的新情况:",
        "An earlier item on the same matter was decided; this one reviews what came since:",
    ),
    "earlier_cluster": (
        "该聚类此前已有条目处理过,本条目审核此后的增长:",
        "An earlier item on this cluster was decided; this one reviews its growth since:",
    ),
    "earlier_post": (
        "该帖此前已有条目处理过;本条目审核重新评分后触发、此前未被确认的类别(一个帖子只扣一次分):",
        "An earlier item on this post was decided; this one reviews what a re-score flagged "
        "since that no confirmation decided (a post is charged once):",
    ),
    "earlier_jump": (
        "该账号此前的粉丝数异常条目已处理,本条目审核其后的变动:",
        "An earlier follower jump of this account was decided; this item reviews the change since:",
    ),
    "earlier_engagement": (
        "该账号此前的互动数据异常条目已处理,本条目审核其后的发现:",
        "An earlier engagement item of this account was decided; this one reviews the findings "
        "since:",
    ),
    "earlier_signup": (
        "同一名称此前的批量注册条目已处理,本条目审核此后注册的账号:",
        "An earlier registration batch under this name was decided; this one reviews the "
        "accounts registered since:",
    ),
    "earlier_match": (
        "该帖与同一谣言库条目的匹配此前已有条目处理过,本条目重新审核该匹配:",
        "An earlier item on this post's match with the same banked rumour was decided; this one "
        "reviews the match again:",
    ),
    "timeline_partial": (
        "聚类共 {size} 个帖子,此处列出 {shown} 个:"
        "其余已不在近似重复实时窗口中,或超出聚类条目保存的成员",
        "The cluster has {size} posts, {shown} listed here: the others have left the live "
        "near-duplicate window, or are beyond the members the cluster's item keeps",
    ),
    "account_items": ("该账号的其他条目", "The account's other items"),
    "when": ("时间", "When"),
    "latest_items": ("仅列出最近的 {shown} 条", "Only the latest {shown} are listed"),
    "confirmation_overturned": ("违规确认已撤销", "the confirmation is overturned"),
    "escalated_by_you": (
        "此条目由你上报:由你以外的管理员认领并处理",
        "You escalated this item: an admin other than you claims and decides it",
    ),
    "escalated_to_admin": (
        "已上报的条目由管理员认领并处理",
        "An escalated item is claimed and decided by an admin",
    ),
    "escalated_waiting": ("已上报待管理员处理 {n} 条", "{n} escalated, waiting for an admin"),
    "own_decision": (
        "原决定由你作出:交由其他审核员处理",
        "You took the decision appealed: another reviewer resolves it",
    ),
    "own_escalated_decision": (
        "原决定由你作出,针对已上报的条目:由你以外的管理员处理申诉",
        "You took the decision appealed, on an escalated item: an admin other than you resolves it",
    ),
    "own_escalation": (
        "该条目由你上报,原决定由他人作出:由你以外的管理员处理申诉",
        "You escalated the item another decided: an admin other than you resolves the appeal",
    ),
    "escalated_appeal": (
        "原决定针对已上报的条目:由管理员处理申诉",
        "The decision appealed was taken on an escalated item: an admin resolves it",
    ),
    "own_filing": (
        "申诉由你代为提交:交由其他审核员处理",
        "You filed this appeal: another reviewer resolves it",
    ),
    "sent_otherwise": (
        "该表单已提交过,内容不同:本次未执行任何操作。请重新打开页面再处理",
        "This form was sent already with other values: nothing was done this time. Open the "
        "page again to decide",
    ),
    "policy": ("策略", "policy"),
    "policy_changed": (
        "策略已更新:本记录按策略 {version} 评分,现行策略为 {current}。"
        "下表为评分时的阈值,现行阈值不同处附后",
        "The policy has changed since: this record was scored under {version}, the current one "
        "is {current}. The thresholds below are the ones it was scored with, the current ones "
        "beside them where they differ",
    ),
    "thresholds_not_kept": (
        "评分所用策略 {version} 的阈值未保存(服务当时尚未保存策略):下表为现行策略 {current} 的阈值,"
        "不一定是评分时所用的",
        "The thresholds of policy {version}, which scored this record, were not kept (the "
        "service did not keep policies then): those below are the current policy {current}'s, "
        "not necessarily the ones it was scored with",
    ),
    "now_at": ("(现行 {value})", "(now {value})"),
    "compare": ("更早的帖子与本帖对照", "The earlier post beside this one"),
    "earliest": ("最早来源", "earliest source"),
    "credit": ("信用分", "Credit"),
    "level": ("等级", "Level"),
    "registered": ("注册于", "Registered"),
    # a row a charge or a post made, or one from before registrations were kept
    "registration_unknown": ("未知", "not known"),
    "dispositions": ("处置", "Dispositions"),
    "history": ("记录", "History"),
    "item_reports": ("举报内容", "What reporters wrote"),
    "first_reports": ("仅列出最早的 {shown} 条", "Only the first {shown} are listed"),
    "decisions": ("审核记录", "Decisions"),
    "claim": ("认领", "Claim"),
    "confirm": ("确认违规", "Confirm"),
    "dismiss": ("驳回", "Dismiss"),
    "escalate": ("上报", "Escalate"),
    "category": ("违规类别", "Category"),
    "basis": ("依据条款", "Basis (article)"),
    "note": ("备注", "Note"),
    "shortcuts": (
        "快捷键:c 认领,j 下一条,q 队列;y 确认、d 驳回、e 上报只移到其按钮,再按 Enter 执行",
        "Keys: c claim, j next item, q queue; y confirm, d dismiss, e escalate move to their "
        "button, Enter then presses it",
    ),
    "keys_off": ("关闭快捷键", "Turn shortcut keys off"),
    "keys_on": ("开启快捷键", "Turn shortcut keys on"),
    "file_appeal": ("登记申诉", "File an appeal"),
    # the appeals page after a filing, confirming it (what the form took, and when it is due)
    "appeal_filed": (
        "已代持有人登记申诉 {appeal_id}(账号 {account_id},条目 {item_id}),处理期限 {deadline}",
        "Appeal {appeal_id} filed on the holder's behalf (account {account_id}, item "
        "{item_id}), due {deadline}",
    ),
    "charges_pending": (
        "条目 {item_id} 已确认;批次中未列出的成员仍在后台逐一扣分,稍后可在各账号记录中查看",
        "Item {item_id} is confirmed; its batch's members past the listing are still being "
        "charged in the background, and their charges show in each account's history as they "
        "are made",
    ),
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
    # every item queued counts, whatever its kind (a report, a cluster, an account's item), not
    # only the flagged records: the title says so
    "flagged_per_day": (
        "各类别每日入队条目数(各来源合计,14 天,按 {zone} 日期)",
        "Review items queued per head per day, of every kind (14 days, {zone} dates)",
    ),
    "queue_age": ("待审条目按等待时长", "Open items by age"),
    "per_reviewer": ("各审核员决定数(7 天)", "Decisions per reviewer (7 days)"),
    "appeal_outcomes": ("申诉结果", "Appeal outcomes"),
    # the records storage keeps are those whose decision the policy persists: never a post that
    # passed, so the plots show the flagged (and blocked) posts' scores only
    "score_dist": (
        "近一天存储的记录({decisions})的分数与审核阈值",
        "Scores of the last day's stored records ({decisions}) against the review threshold",
    ),
    "scores_counted": ("现行策略下的 {n} 条记录", "{n} records under the current policy"),
    "scores_counted_newest": (
        "现行策略下最新的 {n} 条记录",
        "The newest {n} records under the current policy",
    ),
    "passed_not_stored": (
        "放行的帖子不存储,不在其中",
        "posts that passed are not stored, so not counted",
    ),
    "list_separator": ("、", ", "),
    "clause_separator": (";", "; "),
    "forbidden": ("无权访问此页面", "You may not open this page"),
    "form_stale": (
        "表单已过期(打开于本浏览器最近一次登录之前,或其会话已结束),操作没有生效:"
        "请重新打开页面后再提交",
        "The form was out of date (opened before the latest sign-in in this browser, or its "
        "session ended), and nothing was done: open its page again and send it again",
    ),
    "open_again": ("重新打开页面", "Open the page again"),
    "written_kept": (
        "表单中填写的内容如下,可复制到重新打开的页面中:",
        "What was written in the form, to copy into the page opened again:",
    ),
    "language": ("English", "中文"),
    "decided": ("已处理", "Decided"),
    "not_found": ("没有这个条目", "No such item"),
    "no_page": ("没有这个页面", "No such page"),
    "invalid_request": ("请求中有无效的值", "The request holds a value that is not valid"),
    "body_too_large": (
        "提交的内容过大,操作没有生效",
        "What was sent is too large, and nothing was done",
    ),
    "body_too_large_limit": (
        "表单内容不得超过 {limit} 字节;请缩短后重新提交",
        "A form may hold at most {limit} bytes: shorten it and send it again",
    ),
    "body_too_slow": (
        "提交的内容未能及时送达,操作没有生效",
        "What was sent did not arrive in time, and nothing was done",
    ),
    "body_too_slow_limit": (
        "表单须在 {seconds} 秒内送达;请重新提交",
        "A form must arrive within {seconds} s: send it again",
    ),
    "action": ("操作", "Action"),
    "appeal_id": ("申诉编号", "Appeal id"),
    "rumor_id": ("谣言编号", "Rumour id"),
    "cursor": ("翻页位置", "Page position"),
    "active_cursor": ("已生效处置的翻页位置", "Active dispositions' page position"),
    "show_all": ("显示全部", "Show all"),
    "follower_jump": ("粉丝数异常变动(第十二条)", "Abnormal follower jump (art12)"),
    "followers": ("粉丝数", "Followers"),
    "jump_before": ("变动前", "Before"),
    "jump_after": ("变动后", "After"),
    "jump_at": ("变动时间", "When"),
    "jump_since": ("变动前数值登记于", "Before given at"),
    "engagement": ("互动数据异常(第十二条)", "Abnormal engagement (art12)"),
    "engagement_check": ("发现", "Finding"),
    "engagement_counts": ("数据", "Counts"),
    # the posts whose findings left an engagement item: they turned out to be another
    # account's when the publish path stored them (``service.console.present.moved``)
    "moved_posts": ("已转出的帖子", "Posts that went to another account"),
    "moved_intro": (
        "以下帖子经发布端存储,确认属于其他账号:其互动异常的发现已转给该账号重新评估",
        "These posts turned out to be another account's when the publish path stored them: "
        "their findings went to that account to be weighed again",
    ),
    "moved_to": ("所属账号", "Owned by"),
    "moved_here": ("本条目", "This item"),
    "moved_kept": (
        "确认违规时依据了其发现(仍列于上表):扣分仍然有效,直至本账号申诉",
        "was confirmed on its findings (still listed above): the charge stands until this "
        "account appeals it",
    ),
    "moved_dropped": ("其发现已从本条目移出", "no longer lists its findings"),
    "moved_badge": ("已转出", "moved"),
    "signup_batch": ("批量注册(第十条)", "Batch registration (art10)"),
    "signup_skeleton": ("去除序号后的共同名称", "Name shared without serial numbers"),
    "signup_accounts": ("账号数", "Accounts"),
    "registered_at": ("注册时间", "Registered at"),
    "signup_together": (
        "成员账号 {accounts} 注册于同一次批量注册(共同名称 {skeleton}):",
        "Members {accounts} were registered in one batch (shared name {skeleton}):",
    ),
    "signup_partial": (
        "该批共 {size} 个账号,此处列出最早注册的 {shown} 个;未列出的 {unlisted} 个同属该批,"
        "确认时逐一扣分,各自可申诉",
        "The batch holds {size} accounts; the {shown} registered first are listed, and the "
        "{unlisted} others are of the batch all the same: a confirmation charges each, and "
        "each may appeal its own charge",
    ),
    "impersonation": (
        "擅自使用受保护名称(第八条)",
        "Unauthorised use of a protected name (art8)",
    ),
    "account_name": ("账号名称", "Account name"),
    "protected_name": ("受保护名称", "Protected name"),
    "protected_kind": ("名称所属", "Whose name"),
    "protected_entry": ("条目编号", "Entry"),
    "interface_language": ("界面语言", "Interface language"),
    "queued_at": ("入队", "queued"),
    "held_until": ("至 {until}", "until {until}"),
    "decision": ("评分决定", "Decision"),
    "never_blocked": ("不按分数拦截", "never on the score alone"),
    "weight": ("权重", "weight"),
    "lifted": ("{at} 解除", "lifted {at}"),
    "no_data": ("暂无数据", "no data"),
    # an article by its code word (``art18`` the article, ``art18.6`` its item 6), Chinese in
    # the regulation's own numbering, English as the code
    "article": ("第{article_zh}条", "art{article}"),
    "article_item": ("第{article_zh}条第{item_zh}项", "art{article}.{item}"),
    # a length of time (an item's wait, a gap between posts): seconds under a minute, minutes
    # under an hour, hours under two days, then days (``service.console.times.unit_of``);
    # the dashboard's age buckets say theirs in the same units
    "unit.seconds": ("{n} 秒", "{n} s"),
    "unit.minutes": ("{n} 分钟", "{n} min"),
    "unit.hours": ("{n} 小时", "{n} h"),
    "unit.days": ("{n} 天", "{n} days"),
    "under": ("不足 {span}", "under {span}"),
    "over": ("超过 {span}", "over {span}"),
    "value": ("值", "Value"),
    "refused_field": ("{field}: {problem}", "{field}: {problem}"),
    "required": ("必填", "is required"),
    "too_long": ("不能超过 {max_length} 个字符", "is longer than {max_length} characters"),
    "not_whole_number": ("应为整数", "is not a whole number"),
    "out_of_range": ("超出范围", "is out of range"),
    "not_a_choice": ("不是可选的值", "is not one of the choices"),
    "not_the_form": ("格式不对", "is not in the expected form"),
    "confirm_needs": ("确认违规时必填", "is needed to confirm a violation"),
    "not_a_cursor": ("不是列表给出的位置", "is not a position a listing gave out"),
    "not_valid": ("无效", "is not valid"),
    "not_an_article": (
        "不是《规定》中的条或项(如第十八条或 art18,第十八条第六项或 art18.6)",
        "names no article or item of the Provisions (as art18, or art18.6 for its item 6)",
    ),
    # a status as the pages show it, by its code word (items' ``service.review.items.STATUSES``,
    # reports' ``service.review.views.ReportStatus``, appeals'
    # ``service.review.appeals.APPEAL_STATUSES``); the code word stays in the HTML's
    # ``data-status`` and the forms' values
    "status.open": ("待处理", "open"),
    "status.escalated": ("已上报", "escalated"),
    "status.confirmed": ("已确认违规", "confirmed"),
    "status.dismissed": ("已驳回", "dismissed"),
    "status.overturned": (
        "申诉成立,违规确认已撤销",
        "appeal upheld: the confirmation is overturned",
    ),
    "status.pending": ("待处理", "pending"),
    "status.upheld": ("申诉成立", "upheld"),
    "status.rejected": ("申诉驳回", "rejected"),
    # a decision on an item as the pages list it, by its action (``service.review.items.ACTIONS``)
    "action.confirm": ("确认违规", "confirmed a violation"),
    "action.dismiss": ("驳回", "dismissed"),
    "action.escalate": ("上报", "escalated"),
    # a disposition as the pages list it, by the kind the default policy's ladder gives it
    # (art19's measures, in its words); a kind a deployment's policy adds is shown as it is
    "disposition.warning": ("警示提醒", "warning"),
    "disposition.limit_features": ("限制账号功能", "features limited"),
    "disposition.suspend_updates": ("暂停信息更新", "updates suspended"),
    "disposition.stop_advertising": ("停止广告发布", "advertising stopped"),
    "disposition.close_account": ("关闭注销账号", "account closed"),
    "disposition.blacklist": ("列入黑名单", "blacklisted"),
    "disposition.ban_reregistration": ("禁止重新注册", "re-registration banned"),
    "disposition.suspend_service": (
        "暂停提供服务,限期改正",
        "service suspended, to be corrected by its end",
    ),
    # art10's measure for a dormant account, and the notice and the warning before it that the
    # platform passes on (kinds of ``service.review.dormancy``)
    "disposition.suspend_dormant": (
        "超过六个月未登录、未使用,暂停提供服务(登录或发帖即恢复)",
        "service suspended after six months unused (lifted by a login or a post)",
    ),
    "disposition.dormancy_notice": (
        "通知:账号超过六个月未登录、未使用",
        "notice: the account has not been logged in nor used for six months",
    ),
    "disposition.dormancy_warning": (
        "提醒:账号即将被认定为超过六个月未登录、未使用(登录或发帖即可避免)",
        "warning: the account will soon be found unused for six months (a login or a post "
        "avoids it)",
    ),
    # an item's source as the pages show it, by its kind (``service.review.items.KINDS``)
    "kind.score": ("评分", "score"),
    "kind.cluster": ("近似重复聚类", "cluster"),
    "kind.bank_match": ("谣言库匹配", "bank match"),
    "kind.report": ("举报", "report"),
    "kind.follower_jump": ("粉丝数异常", "follower jump"),
    "kind.engagement": ("互动数据异常", "engagement"),
    "kind.impersonation": ("冒用名义", "impersonation"),
    # what found a post's engagement abnormal, by its check (``service.review.engagement``), and
    # the finding in words, its counts filled in (``service.console.present.Finding``)
    "engagement.check.jump": ("数据突增", "jump"),
    "engagement.check.per_read": ("互动多于阅读", "more interactions than reads"),
    "engagement.check.per_reposter": ("少数账号反复转发", "few accounts reposting again and again"),
    "engagement.count.reads": ("阅读", "reads"),
    "engagement.count.reposts": ("转发", "reposts"),
    "engagement.count.comments": ("评论", "comments"),
    "engagement.count.likes": ("点赞", "likes"),
    "engagement.jump.typical": (
        "{count} {before} → {after}(该账号其他帖子中位数 {typical})",
        "{count} {before} → {after} (the account's other posts' median {typical})",
    ),
    "engagement.jump.followers": (
        "{count} {before} → {after}(粉丝 {followers})",
        "{count} {before} → {after} ({followers} followers)",
    ),
    "engagement.per_read": (
        "转发、评论与点赞共 {interactions},阅读 {reads}",
        "{interactions} reposts, comments and likes, {reads} reads",
    ),
    "engagement.per_reposter": (
        "转发 {reposts},来自 {reposters} 个账号",
        "{reposts} reposts by {reposters} accounts",
    ),
    "kind.dormant": ("长期未使用账号", "dormant account"),
    "kind.signup_batch": ("批量注册", "batch registration"),
    # a dormant account's clock on its item's page: which use set it
    # (``service.review.dormancy.Use``), and since when the account is dormant
    "dormancy_clock": ("账号使用时钟", "When the account was last used"),
    "last_use": ("最近一次使用", "Last use"),
    "use.registration": (
        "注册(服务首次记录该账号)",
        "registration (the service's first row for it)",
    ),
    "use.login": ("登录", "login"),
    "use.post": ("发帖", "post"),
    "use_unknown": ("方式不详(迁移前的记录)", "of a kind not known (from before the migration)"),
    "last_login": ("最近登录", "Last login"),
    "never_reported": ("平台未报告过", "never reported"),
    "dormant_since": ("自 {at} 起判定为长期未使用", "Dormant since {at}"),
    "not_dormant": ("目前不再处于未使用状态", "In use again: no longer dormant"),
    # when the platform was warned of the dormancy and when it took effect, as the sweep found
    # them (the item's evidence)
    "warned_effective": (
        "已于 {warned} 预警,休眠于 {effect} 生效",
        "Warned on {warned}, dormancy effective {effect}",
    ),
    "unwarned_effective": (
        "未预警(当时的策略不预警),休眠于 {effect} 生效",
        "Not warned (the policy then gave no warning), dormancy effective {effect}",
    ),
    # a risk or another category as the pages show it, by its code word
    # (``service.policy.governance.CATEGORIES``): an item's head, a report's or a confirmation's
    # category, a plot's series
    "head.rumor": ("谣言", "rumour"),
    "head.incitement": ("煽动极端情绪", "incitement"),
    "head.fake_originality": ("虚假原创", "fake originality"),
    "head.coordination": ("批量协同发布", "coordination"),
    "head.fake_followers": ("虚假粉丝", "fake followers"),
    "head.fake_engagement": ("互动数据造假", "fake engagement"),
    "head.impersonation": ("擅自使用组织机构或知名人士名义", "impersonation"),
    "head.bulk_registration": ("恶意或虚假批量注册", "bulk registration"),
    "head.dormant": ("注册后超过六个月不登录、不使用", "dormant: unused for six months"),
    # what a protected name names, by its code word (``service.review.protected.PROTECTED_KINDS``)
    "protected.organ": ("党政机关", "party or government organ"),
    "protected.organisation": ("企事业单位等组织机构", "enterprise, institution or organisation"),
    "protected.person": ("社会知名人士", "well-known person"),
    # why an account's credit changed, by the credit ledger's reason
    # (``service.storage.credit_steps.change_credit``)
    "credit.violation": ("确认违规扣分", "violation confirmed"),
    "credit.restore": ("无违规期满恢复", "restored after a clean period"),
    "credit.reversal": ("申诉成立退回", "reversed on appeal"),
    # a console user's role (``service.storage.repository.Role``)
    "role.reviewer": ("审核员", "reviewer"),
    "role.admin": ("管理员", "admin"),
    # a score record's decision (``service.record.Decision``)
    "decision.pass": ("放行", "pass"),
    "decision.review": ("送审", "review"),
    "decision.block": ("拦截", "block"),
    # what a reason's evidence holds, by its name in the score record (nested ones joined by
    # a dot: ``account_level.level``); the item page lists each with its value in words
    # (``service.console.present.facts``); a name not here is shown as it is
    "evidence.account_level.level": ("账号信用等级", "account's credit level"),
    "evidence.account_level.review_factor": (
        "审核阈值按等级乘以",
        "review thresholds multiplied by",
    ),
    "evidence.not_blocked.chars": ("正文字母与数字数", "letters and digits in the post"),
    "evidence.not_blocked.block_min_chars": (
        "按分数拦截所需最少字数",
        "fewest needed to block on the score",
    ),
    "evidence.confirmed_rumor": ("谣言库条目", "confirmed rumour"),
    "evidence.similarity": ("相似度", "similarity"),
    "evidence.notice": ("辟谣说明", "debunk notice"),
    "evidence.cluster": ("聚类编号", "cluster"),
    "evidence.size": ("聚类帖子数", "posts in the cluster"),
    "evidence.accounts": ("聚类账号数", "distinct accounts"),
    "evidence.accounts_within_window": ("批量时间窗内账号数", "accounts within the batch window"),
    "evidence.batch_accounts": ("构成批量所需账号数", "accounts that make a batch"),
    "evidence.batch_minutes": ("批量时间窗", "batch window"),
    "evidence.batch_at": ("成为批量的时间", "became a batch at"),
    "evidence.earliest.id": ("最早的帖子", "earliest post"),
    "evidence.earliest.account_id": ("最早帖子的账号", "earliest post's account"),
    "evidence.account_batches_7d": (
        "该账号 7 天内参与的批量数",
        "batches the account posted in within 7 days",
    ),
    "evidence.earlier_post": ("更早的帖子", "earlier post"),
    "evidence.earlier_account": ("更早帖子的账号", "earlier post's account"),
    "evidence.gap_s": ("晚于更早的帖子", "posted after it by"),
    "evidence.claim": ("原创声明", "originality claim"),
    "evidence.disposition.kind": ("处置", "disposition"),
    "evidence.disposition.basis": ("处置依据", "its basis"),
    "evidence.disposition.ends_at": ("处置结束", "it ends"),
    "evidence.text_decision": ("仅按正文的决定", "decision on the text alone"),
    "claim.declared": ("平台标注为原创", "declared original by the platform"),
    "claim.score": ("原创声明识别分数 {score}", "originality-claim score {score}"),
    "until_lifted": ("直至解除", "until lifted"),
    # a review rule's refusal, by its reason (service.review.refusals.REASONS), with the same
    # details filled in: a moment as the pages show one, a status in words
    "refusal.decided": (
        "该条目已处理({status}),由 {decided_by} 于 {at} 决定",
        "The item is decided already ({status}), by {decided_by} at {at}",
    ),
    "refusal.escalated_by_you": (
        "上报的条目交由上报人以外的管理员处理",
        "An escalated item goes to an admin other than the one who escalated it",
    ),
    "refusal.escalated_to_admin": (
        "上报的条目由管理员认领并处理,审核员不能处理",
        "An escalated item is claimed and decided by an admin, not by a reviewer",
    ),
    "refusal.claimed": (
        "该条目已被其他审核员认领,至 {until} 为止",
        "The item is claimed by another reviewer until {until}",
    ),
    "refusal.escalated_already": ("该条目已上报", "The item is escalated already"),
    "refusal.record_changed": (
        "本页显示后,条目 {item_id} 的评分记录已变更(帖子被重新评分):未作决定。"
        "页面现显示新的记录 {record_id},请阅后重新决定",
        "Item {item_id}'s score record changed after this page showed it (the post was scored "
        "again): nothing was decided. The page shows the new record, {record_id}, now: read "
        "it and decide again",
    ),
    "refusal.own_escalation": (
        "原决定针对你上报的条目:申诉由上报者以外的管理员处理",
        "The decision appealed was taken on an item you escalated: an admin other than the one "
        "who escalated it resolves its appeal",
    ),
    "refusal.escalated_appeal": (
        "原决定针对已上报的条目:申诉由管理员处理,审核员不能处理",
        "The decision appealed was taken on an escalated item: an admin resolves its appeal, "
        "not a reviewer",
    ),
    "refusal.own_filing": (
        "申诉交由提交者以外的审核员处理",
        "An appeal is resolved by a reviewer other than the one who filed it",
    ),
    "refusal.no_item": ("没有条目 {item_id}", "No review item {item_id}"),
    "refusal.no_account": ("没有账号“{account_id}”", "No account {account_id!r}"),
    "refusal.no_report": ("没有举报 {report_id}", "No report {report_id}"),
    "refusal.no_appeal": ("没有申诉 {appeal_id}", "No appeal {appeal_id}"),
    "refusal.not_a_violation_of": (
        "条目 {item_id} 不是账号“{account_id}”已确认的违规",
        "Item {item_id} is not a confirmed violation of account {account_id!r}",
    ),
    "refusal.charged_by_other": (
        "条目 {item_id} 未扣账号“{account_id}”的信用分(由条目 {charged_by} 扣除):请对该条目申诉",
        "Item {item_id} did not charge account {account_id!r} (item {charged_by} did): "
        "the post is appealed there",
    ),
    "refusal.no_decision": (
        "条目 {item_id} 没有可申诉的决定",
        "Item {item_id} has no decision to appeal",
    ),
    "refusal.appeal_closed": (
        "申诉期限已于 {deadline} 截止",
        "The window to appeal closed at {deadline}",
    ),
    "refusal.appealed_already": (
        "条目 {item_id} 已申诉过(申诉 {appeal_id})",
        "Item {item_id} was appealed already (appeal {appeal_id})",
    ),
    "refusal.appeal_resolved": (
        "申诉 {appeal_id} 已处理({status})",
        "Appeal {appeal_id} is resolved already ({status})",
    ),
    "refusal.own_decision": (
        "申诉交由作出原决定以外的审核员处理",
        "An appeal is resolved by a reviewer other than the one who decided",
    ),
    "refusal.own_escalated_decision": (
        "原决定针对已上报的条目:申诉由作出原决定以外的管理员处理",
        "The appealed decision was taken on an escalated item: an admin other than the one "
        "who decided resolves its appeal",
    ),
    "refusal.subject_kept": (
        "账号“{account_id}”已有主体,不可更换:重新注册以它核验(第十条、第十九条)",
        "Account {account_id!r} has a subject already; it is never replaced, since "
        "re-registration is checked against it (art10, art19)",
    ),
    "refusal.subject_blacklisted": (
        "该主体的账号“{account}”已被列入黑名单(第十九条)",
        "The subject's account {account} is blacklisted (art19)",
    ),
    "refusal.subject_at_cap": (
        "该主体已有 {count} 个账号,每个主体上限为 {cap} 个(第十条)",
        "The subject holds {count} accounts, the cap per subject (art10) is {cap}",
    ),
    "refusal.name_kept": (
        "账号“{account_id}”处于 {kinds}:其名称不得重新注册(第八条第三款),因此不可更改",
        "Account {account_id!r} is under {kinds}: its name stays refused to re-registration "
        "(art8, third paragraph), so it is not changed",
    ),
    "refusal.name_protected": (
        "名称含有受保护的{kind}名称“{name}”(条目 {entry_id}),该主体未获授权使用(第八条)",
        "The name holds {name!r}, a protected {kind} name (entry {entry_id}) that the subject "
        "is not authorised to use (art8)",
    ),
    "refusal.protected_length": (
        "名称折叠后为“{folded}”,共 {chars} 个字母或数字:受保护名称折叠后应有 {least} 至 {most} 个,"
        "以免一个常见字符就拒绝所有含有它的名称",
        "The name folds to {folded!r}, {chars} letters or digits: a protected name folds to "
        "{least} to {most}, so that an entry does not refuse every name holding a common "
        "character",
    ),
    "refusal.protected_already": (
        "“{name}”已受保护(条目 {entry_id}):折叠后是同一名称",
        "{name!r} is protected already (entry {entry_id}), as the same name once folded",
    ),
    "refusal.no_protected_name": ("没有受保护名称 {entry_id}", "No protected name {entry_id}"),
    "refusal.post_account": (
        "帖子“{post_id}”属于账号“{account_id}”,不属于“{given}”",
        "Post {post_id!r} belongs to account {account_id!r}, not to {given!r}",
    ),
    "refusal.dormant_category": (
        "条目 {item_id} 的来源是“{item_kind}”:长期未使用账号的条目只以“注册后超过六个月不登录、"
        "不使用”类别确认,该类别也只用于此类条目(账号休眠不是违规)",
        "Item {item_id} is of kind {item_kind!r}: a dormant account's item is confirmed as "
        "category 'dormant', and that category confirms no other item (a dormancy is no "
        "violation)",
    ),
    "refusal.impersonation_category": (
        "条目 {item_id} 的来源是“{item_kind}”:冒用名义(第八条)只在受保护名称为该账号开启的"
        "“冒用名义”条目上以“擅自使用组织机构或知名人士名义”类别确认,该类别也只用于此类条目"
        "(由此暂停的服务,按该条目所列的受保护名称,在账号改正名称时解除、到期时结算)",
        "Item {item_id} is of kind {item_kind!r}: an impersonation (art8) is confirmed on the "
        "'impersonation' item a protected name opens for the account, as category "
        "'impersonation', and that category confirms no other item (the suspension it brings "
        "is lifted by a correction of the name, and settled at its end, against the protected "
        "names that item holds)",
    ),
    "refusal.post_not_live": (
        "帖子“{post_id}”不在实时窗口中:请填写谣言正文",
        "Post {post_id!r} is not in the live window: give the rumour's text",
    ),
    "refusal.unmatchable": (
        "正文是套话或太短,无法匹配任何内容",
        "The text is boilerplate or too short to match anything",
    ),
    "refusal.banked_already": (
        "谣言库已有这条谣言:{rumor_id}(相似度 {similarity:.2f})",
        "The bank has this rumour already: {rumor_id} (similarity {similarity:.2f})",
    ),
    "refusal.no_rumor": ("谣言库中没有“{rumor_id}”", "No confirmed rumour {rumor_id!r}"),
    "refusal.no_post": (
        "没有帖子“{post_id}”:服务既未评分过它,也未收到过它的互动数据",
        "No post {post_id!r}: the service neither scored it nor was given its engagement counts",
    ),
    "refusal.no_engagement": (
        "帖子“{post_id}”没有互动数据:平台从未报告过",
        "Post {post_id!r} has no engagement counts: none were reported for it",
    ),
}

FIELDS: dict[str, str] = {
    "account_id": "account",
    "item_id": "item_id",
    "appeal_id": "appeal_id",
    "rumor_id": "rumor_id",
    "reason": "reason",
    "action": "action",
    "category": "category",
    "basis": "basis",
    "note": "note",
    "text": "text",
    "notice": "notice",
    "cursor": "cursor",
    "active": "active_cursor",
    "status": "status",
    "head": "head",
    "kind": "kind",
    "assignee": "assignee",
    "all": "show_all",
    "language": "interface_language",
}
"""The label a request's value has on the page, by the value's name."""

PROBLEMS: dict[str, str] = {
    "missing": "required",
    "blank": "required",
    "string_too_short": "required",  # every console field's least length is one
    "string_too_long": "too_long",
    "too_long": "too_long",  # a length checked after the value's own checks
    "int_parsing": "not_whole_number",
    "int_from_float": "not_whole_number",
    "int_type": "not_whole_number",
    "greater_than_equal": "out_of_range",
    "less_than_equal": "out_of_range",
    "literal_error": "not_a_choice",
    "bool_parsing": "not_a_choice",
    "string_pattern_mismatch": "not_the_form",
    UNKNOWN: "not_an_article",
}
"""What a pydantic error type says, in the words of the console (never pydantic's own, which
are English and may echo the value)."""

VALUE_ERRORS: dict[str, str] = {
    "category": "confirm_needs",
    "basis": "confirm_needs",
    "cursor": "not_a_cursor",
    "active": "not_a_cursor",
}
"""The request models' own checks raise ValueError, which pydantic reports as a ``value_error``
with English words; on these fields it comes from one check only, so the field says which."""


def translator(language: str) -> Callable[[str], str]:
    index = 1 if language == "en" else 0

    def t(key: str) -> str:
        return TEXT[key][index]

    return t


FAMILIES = (
    "status",
    "action",
    "disposition",
    "kind",
    "head",
    "credit",
    "role",
    "decision",
    "protected",
    "use",
)
"""The code words the pages show in words, by the prefix of their keys in :data:`TEXT`; each
is a template filter of the same name."""


def worded(t: Callable[[str], str], family: str, code: str) -> str:
    """``code``, a code word of ``family`` (one of :data:`FAMILIES`, or ``evidence``: the
    names in a reason's evidence), in ``t``'s language; as it is where the table has no words
    for it (a disposition kind a deployment's policy names, evidence a newer record holds)."""
    key = f"{family}.{code}"
    return t(key) if key in TEXT else code


def in_words(show: Callable[[Any, Callable[[str], str]], str]) -> Callable[[Context, Any], str]:
    """The template filter that shows a value as ``show(value, t)`` does, in the page's
    language."""

    @pass_context
    def words(context: Context, value: Any) -> str:
        return show(value, context["t"])

    return words


def code_filter(family: str) -> Callable[[Context, str], str]:
    """The template filter that shows a code word of ``family`` in the page's language (the
    pages keep the code word itself in a ``data-`` attribute)."""
    return in_words(lambda code, t: worded(t, family, code))


def explain(errors: Sequence[Mapping[str, Any]], t: Callable[[str], str]) -> str:
    """Why a request was refused, field by field, in ``t``'s language."""
    said: list[str] = []
    for error in errors:
        names = [part for part in error["loc"] if isinstance(part, str)]
        name = names[-1] if names else ""
        kind = str(error["type"])
        if kind == "value_error":
            key = VALUE_ERRORS.get(name, "not_valid")
        else:
            key = PROBLEMS.get(kind, "not_valid")
        problem = t(key).format(max_length=(error.get("ctx") or {}).get("max_length", ""))
        said.append(t("refused_field").format(field=t(FIELDS.get(name, "value")), problem=problem))
    return "; ".join(said)


WORDED_DETAILS = {"status": "status", "kind": "protected", "item_kind": "kind"}
"""The refusals' details that are code words, by the family whose words they are shown in."""


def explain_refusal(refusal: RefusedError, t: Callable[[str], str], zone: ZoneInfo) -> str:
    """Why a review rule refused, in ``t``'s language, with the refusal's details: a moment as
    the pages show one (in ``zone``), a status and what a protected name names in words."""
    details = {
        name: when(value, zone) if isinstance(value, datetime) else value
        for name, value in refusal.details.items()
    }
    for name, family in WORDED_DETAILS.items():
        if name in details:
            details[name] = worded(t, family, details[name])
    return t(f"refusal.{refusal.reason}").format(**details)
